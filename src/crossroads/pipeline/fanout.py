"""Serving a fan-out request (`model: "a,b,c"`): every model's route at once, one answer.

`routing.fanout` holds the merging rules (choice numbering, error choices, summed usage);
this module runs the branches — in parallel for a plain request, interleaved chunk by chunk
for a stream — and closes the request's ledger with the one outcome the request gets.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.stream_stages import StreamStages
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError, client_closed
from crossroads.protocol.sse import SSE_DONE, sse
from crossroads.providers.base import UpstreamError
from crossroads.providers.errors import to_gateway_error
from crossroads.routing.attempts import OpenStream
from crossroads.routing.fanout import Branch, error_choice, interleave, merge_responses
from crossroads.storage.records import LogRecord
from crossroads.usage import completion_characters, enrich_usage, prompt_characters

__all__ = ["FanOutRelay"]


class FanOutRelay:
    """Runs a fan-out request's branches; stateless, one per gateway."""

    def _branch_usage(
        self, chat: PreparedChat, branch: Branch, response: dict[str, Any], latency_ms: float
    ) -> dict[str, Any]:
        """Price one model's answer at its own deployment's prices."""
        chosen = branch.attempts.chosen
        assert chosen is not None  # the branch answered
        usage = enrich_usage(
            response.get("usage"),
            price=chosen.deployment.price,
            prompt_chars=prompt_characters(chat.body["messages"]),
            response_chars=completion_characters(response.get("choices") or []),
            latency_ms=latency_ms,
        )
        response["usage"] = usage
        response["provider"] = chosen.deployment.provider
        return usage

    def _fanout_record(
        self, record: LogRecord, branches: list[Branch], answered: list[bool]
    ) -> None:
        served = [b for b, ok in zip(branches, answered, strict=True) if ok]
        record.model_served = ",".join(b.model for b in served) or None
        chosen = [b.attempts.chosen for b in served if b.attempts.chosen]
        record.provider = ",".join(c.provider.name for c in chosen) or None
        record.upstream_model = ",".join(c.deployment.upstream_model for c in chosen) or None

    async def complete(self, chat: PreparedChat, branches: list[Branch]) -> dict[str, Any]:
        try:
            results = await asyncio.gather(
                *(b.attempts.complete() for b in branches), return_exceptions=True
            )
        except asyncio.CancelledError:
            chat.ledger.fail(client_closed(), chat.attempts)
            raise
        latency_ms = (time.perf_counter() - chat.context.received) * 1000
        outcomes: list[dict[str, Any] | GatewayError] = []
        usages: list[dict[str, Any] | None] = []
        for branch, result in zip(branches, results, strict=True):
            if isinstance(result, GatewayError):
                outcomes.append(result)
                usages.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcomes.append(result)
                usages.append(self._branch_usage(chat, branch, result, latency_ms))
        errors = [o for o in outcomes if isinstance(o, GatewayError)]
        if len(errors) == len(branches):
            chat.ledger.fail(errors[0], chat.attempts)
            raise errors[0]
        response = merge_responses(chat.request.model, branches, outcomes, usages, latency_ms)
        self._fanout_record(chat.record, branches, [u is not None for u in usages])
        return response  # the gateway closes the books, after the response stages

    async def stream(
        self, chat: PreparedChat, branches: list[Branch]
    ) -> AsyncGenerator[bytes, None]:
        try:
            opened = await asyncio.gather(
                *(b.attempts.open_stream() for b in branches), return_exceptions=True
            )
        except asyncio.CancelledError:
            chat.ledger.fail(client_closed(), chat.attempts)
            raise
        for item in opened:
            if isinstance(item, BaseException) and not isinstance(item, GatewayError):
                raise item
        failures = [o for o in opened if isinstance(o, GatewayError)]
        if len(failures) == len(branches):
            chat.ledger.fail(failures[0], chat.attempts)
            raise failures[0]
        streams = [o if isinstance(o, OpenStream) else None for o in opened]
        errors = {i: o for i, o in enumerate(opened) if isinstance(o, GatewayError)}
        checks = chat.stages.stream_checks(chat) if chat.stages else []
        stages = StreamStages(chat, checks) if checks else None
        return self._relay_fanout(chat, branches, streams, errors, stages)

    async def _relay_fanout(
        self,
        chat: PreparedChat,
        branches: list[Branch],
        streams: list[OpenStream | None],
        errors: dict[int, GatewayError],
        stages: StreamStages | None,
    ) -> AsyncGenerator[bytes, None]:
        identity = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": chat.request.model,
        }
        assemblers = [StreamAssembler() for _ in branches]
        ttft_ms: float | None = None
        finished = False

        def failed(i: int, error: GatewayError) -> bytes:
            branch = branches[i]
            choices = [
                {**error_choice(branch.offset + k, branch.model, error), "delta": {}}
                for k in range(branch.n)
            ]
            for choice in choices:
                del choice["message"]
            return sse({**identity, "choices": choices})

        try:
            for i, error in errors.items():
                yield failed(i, error)
            async for i, item in interleave(streams):
                if item is None:
                    continue
                if isinstance(item, BaseException):
                    error = _as_gateway_error(item, branches[i])
                    errors[i] = error
                    chosen = branches[i].attempts.chosen
                    if chosen is not None and isinstance(item, UpstreamError):
                        chosen_breaker = branches[i].attempts.state.breakers
                        chosen_breaker.get(chosen.deployment.key).on_failure()
                    yield failed(i, error)
                    continue
                assembler = assemblers[i]
                assembler.add(item)
                if ttft_ms is None and assembler.saw_content:
                    ttft_ms = (time.perf_counter() - chat.context.received) * 1000
                if choices := item.get("choices"):
                    offset, model = branches[i].offset, branches[i].model
                    shifted = [
                        {**c, "index": offset + int(c.get("index") or 0), "model": model}
                        for c in choices
                    ]
                    chunk = {**identity, "choices": shifted}
                    shown = chunk if stages is None else await stages.chunk(chunk)
                    if shown is not None:
                        yield sse(shown)
            if stages is not None and (rest := await stages.end(identity)) is not None:
                yield sse(rest)
            latency_ms = (time.perf_counter() - chat.context.received) * 1000
            outcomes: list[dict[str, Any] | GatewayError] = []
            usages: list[dict[str, Any] | None] = []
            for i, branch in enumerate(branches):
                if i in errors:
                    outcomes.append(errors[i])
                    usages.append(None)
                    continue
                completion = assemblers[i].completion()
                completion["usage"] = assemblers[i].usage
                usage = self._branch_usage(chat, branch, completion, latency_ms)
                outcomes.append(completion)
                usages.append(usage)
            response = merge_responses(chat.request.model, branches, outcomes, usages, latency_ms)
            if stages is not None:
                stages.finish(response)
            response.update(chat.reports)
            if chat.request.stream_options and chat.request.stream_options.include_usage:
                final = {
                    **identity,
                    "choices": [],
                    "usage": response["usage"],
                    "provider": response["provider"],
                    "routing": response["routing"],
                    **chat.reports,
                }
                yield sse(final)
            elif chat.reports:
                yield sse({**identity, "choices": [], **chat.reports})
            yield SSE_DONE
            finished = True
            self._fanout_record(chat.record, branches, [u is not None for u in usages])
            if len(errors) == len(branches):
                chat.ledger.fail(errors[min(errors)], None)
            else:
                chat.ledger.succeed(response, response["usage"], latency_ms, ttft_ms, attempts=None)
        finally:
            if not finished:
                chat.record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
                chat.ledger.fail(client_closed(), None)


def _as_gateway_error(exc: BaseException, branch: Branch) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    chosen = branch.attempts.chosen
    provider = chosen.provider.name if chosen else branch.model
    if isinstance(exc, UpstreamError):
        return to_gateway_error(exc, provider)
    return GatewayError(500, f"Internal error while relaying model '{branch.model}': {exc!r}")
