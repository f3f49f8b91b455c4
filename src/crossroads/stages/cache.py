"""The response cache as a stage: look up before the call, store after it.

Settings resolve request → key → model → global (`cache/config.py`); the request speaks
with the body's `cache: {mode, ttl, namespace, threshold}` or the `x-crossroads-cache`
header (a mode), the body winning. A request sampled with an explicit temperature above 0
is not cached unless the request or the config asks for it. A hit answers at once —
streamed or not — with `usage.prompt_cache_hit_tokens`, cost 0 and a `cache` field, and is
logged with them. Entries are namespaced by key, so keys never share answers unless the
config says `share_across_keys`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from crossroads.cache.config import CacheConfig, CacheSettings
from crossroads.cache.responses import CacheHit, Probe, ResponseCache, probe
from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.stages import Stage, StreamCheck
from crossroads.protocol.errors import GatewayError

__all__ = ["CacheKind", "CacheStage", "Resolved"]

_log = logging.getLogger("crossroads.cache")

DEFAULT_TTL = 3600.0
DEFAULT_THRESHOLD = 0.86  # benchmarks/cache/semantic.py: 0 false hits, most paraphrases
_REQUEST_MODES = ("bypass", "refresh", "off", "exact", "semantic")
# Fields of an answer that describe one call, not the answer: not stored.
_NOT_STORED = ("routing", "cache", "citations", "guardrails", "prompt_filter_results")


@dataclass(frozen=True, slots=True)
class Resolved:
    mode: str  # off | exact | semantic
    ttl: float
    threshold: float
    sampled: bool
    share: bool


def _merge(layers: list[CacheSettings]) -> Resolved:
    out: dict[str, Any] = {}
    for layer in layers:  # later layers win
        out.update(
            {
                k: v
                for k, v in layer.model_dump().items()
                if v is not None
                and k in ("mode", "ttl", "threshold", "sampled", "share_across_keys")
            }
        )
    return Resolved(
        out.get("mode", "off"),
        out.get("ttl", DEFAULT_TTL),
        out.get("threshold", DEFAULT_THRESHOLD),
        out.get("sampled", False),
        out.get("share_across_keys", False),
    )


class CacheKind:
    """Picks the cache stage for a request (pipeline/stages.py `StageKind`)."""

    name = "cache"
    before = True
    after = True

    def __init__(self, config: CacheConfig, cache: ResponseCache) -> None:
        self.config = config
        self.cache = cache
        self._resolved: dict[tuple[str, str | None], Resolved] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def dormant(self) -> frozenset[str] | None:
        """With every configured layer off, only a request's `cache` (or the
        `x-crossroads-cache` header) turns the stage on."""
        layers = [self.config, *self.config.models.values(), *self.config.keys.values()]
        if any(layer.mode not in (None, "off") for layer in layers):
            return None
        return frozenset({"cache"})

    def resolve(self, model: str, key_id: str | None) -> Resolved:
        found = self._resolved.get((model, key_id))
        if found is None:
            layers: list[CacheSettings] = [self.config]
            if model in self.config.models:
                layers.append(self.config.models[model])
            if key_id is not None and key_id in self.config.keys:
                layers.append(self.config.keys[key_id])
            found = self._resolved[(model, key_id)] = _merge(layers)
        return found

    def select(self, chat: PreparedChat) -> Stage | None:
        request = chat.request
        control = request.cache
        asked: str | None = control.mode if control is not None and control.mode else None
        if asked is None and chat.context.cache_header:
            asked = chat.context.cache_header.strip().lower()
            if asked not in _REQUEST_MODES:
                raise GatewayError(
                    400,
                    f"x-crossroads-cache must be one of {', '.join(_REQUEST_MODES)}; "
                    f"got {chat.context.cache_header!r}.",
                    type="invalid_request_error",
                    param="x-crossroads-cache",
                    code="invalid_value",
                )
        if asked in ("bypass", "off"):
            return None
        settings = self.resolve(request.model, chat.context.key_id)
        mode = asked if asked in ("exact", "semantic") else settings.mode
        if asked == "refresh" and mode == "off":
            mode = "exact"
        if mode == "off":
            return None
        temperature = request.temperature
        if (
            temperature is not None
            and temperature > 0
            and not (asked in ("exact", "semantic") or settings.sampled)
        ):
            return None
        key = chat.context.key_id or ""
        space = control.namespace if control is not None else None
        namespace = f"shared|{space or ''}" if settings.share else f"key:{key}|{space or ''}"
        return CacheStage(
            self,
            namespace,
            semantic=mode == "semantic",
            read=asked != "refresh",
            ttl=control.ttl if control is not None and control.ttl else settings.ttl,
            threshold=control.threshold
            if control is not None and control.threshold
            else settings.threshold,
        )

    def store_later(self, stage: CacheStage, completion: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(stage.store(completion))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _storable(completion: dict[str, Any]) -> bool:
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(c.get("finish_reason") in ("stop", "length", "tool_calls") for c in choices)


class CacheStage(Stage):
    name = "cache"

    def __init__(
        self,
        kind: CacheKind,
        namespace: str,
        *,
        semantic: bool,
        read: bool,
        ttl: float,
        threshold: float,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.semantic = semantic
        self.read = read
        self.ttl = ttl
        self.threshold = threshold
        self.probe: Probe | None = None
        self.hit: CacheHit | None = None

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        self.probe = probe(chat.body, self.semantic)
        if not self.read:
            return None
        try:
            hit = await self.kind.cache.lookup(self.namespace, self.probe, self.threshold)
        except Exception:  # a cache that cannot answer is a miss, not a failed request
            _log.exception("cache lookup failed")
            return None
        if hit is None:
            return None
        self.hit = hit
        answer = hit.completion
        answer["created"] = int(time.time())
        given = answer.get("usage")
        usage: dict[str, Any] = given if isinstance(given, dict) else {}
        prompt = int(usage.get("prompt_tokens") or 0)
        answer["usage"] = {
            **usage,
            "prompt_cache_hit_tokens": prompt,
            "prompt_cache_miss_tokens": 0,
            "cost": 0.0,
        }
        report: dict[str, Any] = {"hit": True, "type": hit.type}
        if hit.similarity is not None:
            report["similarity"] = hit.similarity
        chat.report("cache", report)
        return answer

    async def store(self, completion: dict[str, Any]) -> None:
        if self.probe is None or not _storable(completion):
            return
        kept = {k: v for k, v in completion.items() if k not in _NOT_STORED}
        try:
            await self.kind.cache.store(self.namespace, self.probe, kept, self.ttl)
        except Exception:
            _log.exception("cache store failed")

    async def after(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        if self.hit is not None:
            return
        chat.report("cache", {"hit": False, "type": "semantic" if self.semantic else "exact"})
        if self.kind.cache.backend.shared:
            self.kind.store_later(self, dict(response))  # off the answer's path
        else:
            await self.store(response)

    def stream(self, chat: PreparedChat) -> StreamCheck | None:
        return None if self.hit is not None else _StoreStream(self)


class _StoreStream(StreamCheck):
    """Passes the stream through untouched; stores the assembled answer at its end."""

    policy = "pass"

    def __init__(self, stage: CacheStage) -> None:
        self.stage = stage

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        stage = self.stage
        chat.report("cache", {"hit": False, "type": "semantic" if stage.semantic else "exact"})
        stage.kind.store_later(stage, dict(completion))
