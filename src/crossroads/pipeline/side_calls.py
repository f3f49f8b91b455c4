"""Extra upstream calls a stage makes for its own work: a judge, a criterion, a regeneration.

A side call goes through the same preparation and routing as a caller's request — the
caller's key must be allowed the model, retries and failover apply, the deployment's price
is the one charged — but its answer is the stage's, not the caller's. Its tokens and cost
are added to the request's usage (`SideBill.charge`), before the ledger closes the books,
so they are logged and billed to the key like the answer's own; `usage.<purpose>` says how
much of the total each purpose took.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.prepare import Preparer
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.usage import completion_characters, enrich_usage, prompt_characters

__all__ = ["SideBill", "SideCalls", "answer_text"]

_COUNTED = ("prompt_tokens", "completion_tokens", "total_tokens")


class SideBill:
    """What one request's side calls used, by purpose (`quality`, `criteria`, `integrity`…)."""

    def __init__(self) -> None:
        self.purposes: dict[str, dict[str, Any]] = {}

    def add(self, purpose: str, usage: Mapping[str, Any]) -> None:
        spent = self.purposes.setdefault(
            purpose, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}
        )
        for name in _COUNTED:
            spent[name] += int(usage.get(name) or 0)
        spent["cost"] = round(spent["cost"] + float(usage.get("cost") or 0.0), 10)
        spent["calls"] = spent.get("calls", 0) + 1

    def charge(self, usage: dict[str, Any]) -> None:
        """Add every purpose's spending to the answer's `usage` (once; idempotent after)."""
        for purpose, spent in self.purposes.items():
            if purpose in usage:
                continue
            for name in _COUNTED:
                usage[name] = int(usage.get(name) or 0) + spent[name]
            usage["cost"] = round(float(usage.get("cost") or 0.0) + spent["cost"], 10)
            usage[purpose] = dict(spent)


class SideCalls:
    """Makes side calls on behalf of one gateway (bound by `Gateway` at start-up)."""

    def __init__(self, preparer: Preparer) -> None:
        self.preparer = preparer

    def knows(self, model: str) -> bool:
        return self.preparer.catalog.get(model) is not None

    def require(self, model: str, param: str) -> None:
        """A 400 naming `param` when `model` is not one this gateway serves."""
        if not self.knows(model):
            raise bad_request(
                f"`{param}` names the model {model!r}, which this gateway does not serve; "
                "use one of GET /v1/models.",
                param=param,
                code="model_not_found",
            )

    async def complete(
        self,
        chat: PreparedChat,
        bill: SideBill,
        purpose: str,
        model: str,
        messages: list[dict[str, Any]],
        *,
        granted: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """One side call's answer; its usage goes on `bill` under `purpose`. Raises
        `GatewayError` when no deployment answers. `granted`: the caller's key was already
        found allowed this call (a mixture's proposer), so its model list is not checked."""
        body: dict[str, Any] = {"model": model, "messages": messages, **params}
        if chat.request.openai_api_key is not None:
            # The caller brought their own upstream key: the request's side calls use it too.
            body["openai_api_key"] = chat.request.openai_api_key
        # The request's own models were checked against the key when it was prepared (a
        # mixture's aggregator through the mixture's name), so samples and rewrites pass.
        granted = granted or model in chat.request.model_names
        _request, attempts, branches = self.preparer.prepare(
            body, chat.context, granted=frozenset({model}) if granted else frozenset()
        )
        if branches:
            raise GatewayError(400, f"{purpose}: a side call names one model", code="bad_model")
        started = time.perf_counter()
        response = await attempts.complete()
        chosen = attempts.chosen
        assert chosen is not None  # it answered
        usage = enrich_usage(
            response.get("usage"),
            price=chosen.deployment.price,
            prompt_chars=prompt_characters(messages),
            response_chars=completion_characters(response.get("choices") or []),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        response["usage"] = usage
        bill.add(purpose, usage)
        return response


def answer_text(response: Mapping[str, Any], index: int = 0) -> str:
    """The text of choice `index` ("" when it has none)."""
    choices = response.get("choices") or []
    if index >= len(choices):
        return ""
    content = (choices[index].get("message") or {}).get("content")
    return content if isinstance(content, str) else ""
