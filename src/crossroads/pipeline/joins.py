"""How a request's branches become one answer: the one thing a fan-out does differently.

The relay (pipeline/relay.py) runs N branches the same way whatever N is. What it does with
their answers is the join's: `Single` (N = 1) hands the route's answer on as it came —
upstream chunk ids kept, a failure mid-stream ends the stream — while `FanOut` numbers
choices across models, labels each with its model, turns a model's failure into an error
choice and the others go on, and sums usage (the merging rules are routing/fanout.py's).
Each join also closes the books the way its answer needs.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from crossroads.pipeline.context import PreparedChat
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError
from crossroads.providers.base import UpstreamError
from crossroads.routing.fanout import Branch, error_choice, merge_responses

__all__ = ["FanOut", "Join", "Single", "join_for", "single_answer"]

Outcome = dict[str, Any] | GatewayError


class Join(Protocol):
    branches: list[Branch]
    # Whether the stream goes on when one branch fails mid-way (its choices end in error).
    survives_failure: bool

    def answer(
        self, outcomes: list[Outcome], usages: list[dict[str, Any] | None], latency_ms: float
    ) -> dict[str, Any]:
        """The one `chat.completion` for the branches' answers (at least one answered)."""
        ...

    def shape(self, index: int, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """What the caller is sent for branch `index`'s upstream chunk (None: nothing)."""
        ...

    def failed_chunk(self, index: int, error: GatewayError) -> dict[str, Any]:
        """The chunk that says branch `index` failed (joins that survive failures)."""
        ...

    def held(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks the join held back until every branch ended (a vote's winner), to send
        once the answer is joined; [] for joins that send as chunks arrive."""
        ...

    def identity(self, assemblers: list[StreamAssembler]) -> dict[str, Any]:
        """id, object, created and model of the stream's own chunks."""
        ...

    def final_chunk(
        self, assemblers: list[StreamAssembler], response: dict[str, Any]
    ) -> dict[str, Any]:
        """The usage chunk that ends a stream (`stream_options.include_usage`)."""
        ...

    def streamed(
        self,
        response: dict[str, Any],
        outcomes: list[Outcome],
        latency_ms: float,
        ttft_ms: float | None,
    ) -> None:
        """A stream ended with [DONE]: record it."""
        ...

    def stream_failed(
        self,
        assembler: StreamAssembler,
        error: GatewayError,
        cause: BaseException | None,
        ttft_ms: float | None,
    ) -> None:
        """A stream ended early (a failure, a defect, the client gone): record it."""
        ...


def join_for(chat: PreparedChat) -> Join:
    if chat.branches and (chat.request.integrity or 1) > 1:
        from crossroads.pipeline.vote import Vote  # vote.py builds on FanOut, below

        return Vote(chat, chat.branches)
    return FanOut(chat, chat.branches) if chat.branches else Single(chat)


def single_answer(chat: PreparedChat, response: dict[str, Any]) -> dict[str, Any]:
    """One route's answer as the caller gets it: with what the gateway has to say about the
    request (`dropped_params`, …) and how it was routed."""
    response.update(chat.notices)
    response["routing"] = chat.attempts.routing()
    return response


class Single:
    """One route: its answer is the answer."""

    survives_failure = False

    def __init__(self, chat: PreparedChat) -> None:
        self.chat = chat
        request = chat.request
        self.branches = [
            Branch(model=request.model, attempts=chat.attempts, n=request.n or 1, offset=0)
        ]
        # What to say on the first chunk (`dropped_params`, …), known once a deployment
        # answered; None until then.
        self._notices: dict[str, Any] | None = None

    def answer(
        self, outcomes: list[Outcome], usages: list[dict[str, Any] | None], latency_ms: float
    ) -> dict[str, Any]:
        response = outcomes[0]
        assert isinstance(response, dict)  # else the relay raised the error
        return single_answer(self.chat, response)

    def shape(self, index: int, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if not chunk.get("choices"):
            return None  # usage arrives in its own chunk, sent at the end
        if "usage" in chunk:
            chunk["usage"] = None  # usage is reported once, in its own chunk
        if self._notices is None:
            self._notices = self.chat.notices
        if self._notices:
            # Said on the first chunk, where a client sees it before the answer.
            chunk.update(self._notices)
            self._notices = {}
        return chunk

    def failed_chunk(self, index: int, error: GatewayError) -> dict[str, Any]:
        return error.envelope()

    def held(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    def identity(self, assemblers: list[StreamAssembler]) -> dict[str, Any]:
        return assemblers[0].chunk([])

    def final_chunk(
        self, assemblers: list[StreamAssembler], response: dict[str, Any]
    ) -> dict[str, Any]:
        final = assemblers[0].chunk([], provider=response["provider"], usage=response["usage"])
        final.update(self.chat.notices)
        final["routing"] = response["routing"]
        final.update(self.chat.reports)
        return final

    def streamed(
        self,
        response: dict[str, Any],
        outcomes: list[Outcome],
        latency_ms: float,
        ttft_ms: float | None,
    ) -> None:
        attempts = self.chat.attempts
        chosen = attempts.chosen
        assert chosen is not None  # the stream produced content
        attempts.record_outcome(chosen, True, latency_ms, response, ttft_ms)
        self.chat.ledger.succeed(
            response, response["usage"], latency_ms, ttft_ms, attempts=attempts
        )

    def stream_failed(
        self,
        assembler: StreamAssembler,
        error: GatewayError,
        cause: BaseException | None,
        ttft_ms: float | None,
    ) -> None:
        attempts = self.chat.attempts
        if isinstance(cause, UpstreamError) and attempts.chosen is not None:
            latency_ms = (time.perf_counter() - self.chat.context.received) * 1000
            attempts.record_outcome(attempts.chosen, False, latency_ms, None, ttft_ms)
        self.chat.ledger.fail_stream(assembler, error, ttft_ms, attempts)


class FanOut:
    """Several models at once: one choice (or `n`) each, numbered in the caller's order."""

    survives_failure = True

    def __init__(self, chat: PreparedChat, branches: list[Branch]) -> None:
        self.chat = chat
        self.branches = branches
        self._identity = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": chat.request.model,
        }

    def answer(
        self, outcomes: list[Outcome], usages: list[dict[str, Any] | None], latency_ms: float
    ) -> dict[str, Any]:
        response = merge_responses(
            self.chat.request.model, self.branches, outcomes, usages, latency_ms
        )
        record = self.chat.record
        served = [b for b, u in zip(self.branches, usages, strict=True) if u is not None]
        record.model_served = ",".join(b.model for b in served) or None
        chosen = [b.attempts.chosen for b in served if b.attempts.chosen]
        record.provider = ",".join(c.provider.name for c in chosen) or None
        record.upstream_model = ",".join(c.deployment.upstream_model for c in chosen) or None
        return response

    def shape(self, index: int, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = chunk.get("choices")
        if not choices:
            return None
        branch = self.branches[index]
        shifted = [
            {**c, "index": branch.offset + int(c.get("index") or 0), "model": branch.model}
            for c in choices
        ]
        return {**self._identity, "choices": shifted}

    def failed_chunk(self, index: int, error: GatewayError) -> dict[str, Any]:
        branch = self.branches[index]
        choices = [
            {**error_choice(branch.offset + k, branch.model, error), "delta": {}}
            for k in range(branch.n)
        ]
        for choice in choices:
            del choice["message"]
        return {**self._identity, "choices": choices}

    def held(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    def identity(self, assemblers: list[StreamAssembler]) -> dict[str, Any]:
        return dict(self._identity)

    def final_chunk(
        self, assemblers: list[StreamAssembler], response: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            **self._identity,
            "choices": [],
            "usage": response["usage"],
            "provider": response["provider"],
            "routing": response["routing"],
            **self.chat.reports,
        }

    def streamed(
        self,
        response: dict[str, Any],
        outcomes: list[Outcome],
        latency_ms: float,
        ttft_ms: float | None,
    ) -> None:
        errors = [o for o in outcomes if isinstance(o, GatewayError)]
        if len(errors) == len(outcomes):
            self.chat.record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
            self.chat.ledger.fail(errors[0], None)
        else:
            self.chat.ledger.succeed(
                response, response["usage"], latency_ms, ttft_ms, attempts=None
            )

    def stream_failed(
        self,
        assembler: StreamAssembler,
        error: GatewayError,
        cause: BaseException | None,
        ttft_ms: float | None,
    ) -> None:
        self.chat.record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        self.chat.ledger.fail(error, None)
