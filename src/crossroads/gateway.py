"""The chat-completions pipeline: one request in, one response (or stream) out.

Routes parse HTTP and hand the decoded body to `Gateway`; everything between — validation,
model resolution, the upstream call, usage and cost, the log record — happens here, in
that order. The caller's body is forwarded as the dict it arrived as (minus Crossroads'
own fields), not re-serialised from the pydantic model, so parameters this gateway has
never heard of still reach upstreams that understand them, and the hot path does no
copying it does not need. The log record is handed to a writer that batches it off the
request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from crossroads.catalog import Catalog, Deployment
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.chat import (
    EXTENSION_FIELDS,
    ChatCompletionRequest,
    unimplemented_parameters,
)
from crossroads.protocol.errors import GatewayError, client_closed, unsupported_parameter
from crossroads.protocol.validation import validation_error
from crossroads.providers.base import Provider, UpstreamCall, UpstreamError, capability_gap
from crossroads.providers.capabilities import ParameterPlan, plan_parameters
from crossroads.providers.errors import to_gateway_error
from crossroads.storage.records import LogRecord
from crossroads.usage import completion_characters, enrich_usage, prompt_characters

__all__ = ["CallContext", "Gateway", "LogSink", "PreparedChat"]

_SECRET_FIELDS = ("openai_api_key",)


class LogSink(Protocol):
    def submit(self, record: LogRecord) -> None: ...


@dataclass(slots=True)
class CallContext:
    """What the HTTP layer knows about a request before its body is parsed."""

    key_id: str | None = None
    session_header: str | None = None
    tags: list[str] | None = None
    received: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    log_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(slots=True)
class PreparedChat:
    """A validated request bound to the deployment and provider that will serve it."""

    context: CallContext
    request: ChatCompletionRequest
    body: dict[str, Any]
    deployment: Deployment
    provider: Provider
    call: UpstreamCall
    record: LogRecord
    # Parameters the provider cannot honour, removed from the call and reported.
    dropped: list[str] = field(default_factory=list)


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class Gateway:
    def __init__(self, catalog: Catalog, providers: dict[str, Provider], log: LogSink) -> None:
        self.catalog = catalog
        self.providers = providers
        self.log = log

    # --- preparation ------------------------------------------------------------------------

    def prepare(self, body: Any, context: CallContext) -> PreparedChat:
        """Validate `body` and bind it to a deployment; raises `GatewayError` (logged)."""
        record = self._new_record(body, context)
        try:
            if not isinstance(body, dict):
                raise GatewayError(
                    400, "The request body must be a JSON object.", code="invalid_request_body"
                )
            try:
                request = ChatCompletionRequest.model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc, body) from None
            record.stream = bool(request.stream)
            if unsupported := unimplemented_parameters(request):
                raise unsupported_parameter(unsupported[0])
            entry = self.catalog.resolve(request.model)
            deployment, provider, plan = self._choose(entry.name, entry.deployments, request, body)
            self._check_provider(provider, request, entry.name)
        except GatewayError as exc:
            self._fail(record, exc)
            raise
        record.model_served = entry.name
        record.provider = deployment.provider
        record.upstream_model = deployment.upstream_model
        record.session_id = request.session_id or context.session_header
        removed = plan.removed
        upstream_body = {
            k: v for k, v in body.items() if k not in EXTENSION_FIELDS and k not in removed
        }
        upstream_body["model"] = deployment.upstream_model
        if request.stream:
            # Always ask for usage: cost is computed from it even when the caller did not ask.
            upstream_body["stream_options"] = {**(body.get("stream_options") or {})}
            upstream_body["stream_options"]["include_usage"] = True
        call = UpstreamCall(body=upstream_body, api_key=request.openai_api_key)
        return PreparedChat(
            context, request, body, deployment, provider, call, record, plan.dropped
        )

    def _choose(
        self,
        model: str,
        deployments: tuple[Deployment, ...],
        request: ChatCompletionRequest,
        body: dict[str, Any],
    ) -> tuple[Deployment, Provider, ParameterPlan]:
        """The first deployment whose provider can take this request.

        A provider that cannot take a message part, or a caller's own OpenAI key, is never
        chosen. With `provider.require_parameters` one that would drop a parameter is not
        either; otherwise dropping is allowed and reported.
        """
        preferences = request.provider
        require = bool(
            preferences is not None
            and not isinstance(preferences, str)
            and preferences.require_parameters
        )
        refusals: list[GatewayError] = []
        for deployment in deployments:
            provider = self.providers[deployment.provider]
            plan = plan_parameters(provider.capabilities, body)
            problem = self._refusal(provider, request, model, plan if require else None)
            if problem is None:
                return deployment, provider, plan
            refusals.append(problem)
        if len(refusals) == 1:
            raise refusals[0]
        reasons = "; ".join(
            f"{d.provider}: {r.message}" for d, r in zip(deployments, refusals, strict=True)
        )
        raise GatewayError(
            400,
            f"No deployment of model '{model}' can serve this request ({reasons}).",
            param=refusals[0].param,
            code="unsupported_parameter",
        )

    @staticmethod
    def _refusal(
        provider: Provider,
        request: ChatCompletionRequest,
        model: str,
        required: ParameterPlan | None,
    ) -> GatewayError | None:
        """Why `provider` must not get this request, or None when it may."""
        where = f" by provider '{provider.name}', which serves model '{model}'"
        if gap := capability_gap(provider.capabilities, request):
            return unsupported_parameter(gap, where)
        if request.openai_api_key is not None and provider.dialect != "openai":
            return unsupported_parameter(
                "openai_api_key",
                f"{where} (dialect '{provider.dialect}'); a caller's own key is only used "
                "with openai-dialect providers",
            )
        if required is not None and required.dropped:
            names = ", ".join(required.dropped)
            return GatewayError(
                400,
                f"Parameters not supported{where}: {names}. They are required because "
                "`provider.require_parameters` is true; remove them or set it to false to "
                "let them be dropped.",
                param=required.dropped[0],
                code="unsupported_parameter",
            )
        return None

    @staticmethod
    def _check_provider(provider: Provider, request: ChatCompletionRequest, model: str) -> None:
        """Refuse what the chosen provider cannot do now, before anything is sent to it."""
        capabilities = provider.capabilities
        if capabilities.max_n is not None and (request.n or 1) > capabilities.max_n:
            raise GatewayError(
                400,
                f"Model '{model}' can produce at most {capabilities.max_n} choices per request "
                f"(its parallel slots); got n={request.n}.",
                param="n",
                code="invalid_value",
            )
        if not provider.ready:
            raise GatewayError(
                503,
                f"Model '{model}' is not ready: {provider.not_ready_reason}.",
                type="upstream_error",
                code="model_not_ready",
                headers={"Retry-After": "1"},
            )

    def _new_record(self, body: Any, context: CallContext) -> LogRecord:
        is_dict = isinstance(body, dict)
        get = body.get if is_dict else (lambda _key, _default=None: None)
        model = get("model")
        metadata, extra, user = get("metadata"), get("extra"), get("user")
        session = get("session_id")
        stored = is_dict and get("store") is not False
        request_body = None
        if stored:
            request_body = {k: v for k, v in body.items() if k not in _SECRET_FIELDS}
        return LogRecord(
            id=context.log_id,
            created_at=context.created_at,
            model_requested=model if isinstance(model, str) else "",
            status_code=200,
            stream=get("stream") is True,
            key_id=context.key_id,
            request=request_body,
            user=user if isinstance(user, str) else None,
            metadata=metadata if isinstance(metadata, dict) else None,
            session_id=(session if isinstance(session, str) else None) or context.session_header,
            extra=extra if isinstance(extra, dict) else None,
            tags=context.tags,
        )

    def _fail(self, record: LogRecord, error: GatewayError) -> None:
        record.status_code = error.status
        record.error_code = error.code or error.type
        record.error_message = error.message
        record.latency_ms = self._elapsed_ms(record)
        self.log.submit(record)

    def reject(self, error: GatewayError, context: CallContext, body: Any = None) -> None:
        """Log a request refused before it reached `prepare` (malformed JSON, size)."""
        self._fail(self._new_record(body, context), error)

    @staticmethod
    def _elapsed_ms(record: LogRecord) -> float:
        started = record.created_at.timestamp()
        return round((time.time() - started) * 1000, 3)

    # --- non-streaming ----------------------------------------------------------------------

    async def complete(self, chat: PreparedChat) -> dict[str, Any]:
        try:
            response = await chat.provider.complete(chat.call)
        except UpstreamError as exc:
            error = to_gateway_error(
                exc, chat.deployment.provider, caller_key=chat.call.api_key is not None
            )
            self._fail(chat.record, error)
            raise error from None
        except GatewayError as exc:
            self._fail(chat.record, exc)
            raise
        except asyncio.CancelledError:
            self._fail(chat.record, client_closed())
            raise
        latency_ms = (time.perf_counter() - chat.context.received) * 1000
        choices = response.get("choices") or []
        usage = enrich_usage(
            response.get("usage"),
            price=chat.deployment.price,
            prompt_chars=prompt_characters(chat.body["messages"]),
            response_chars=completion_characters(choices),
            latency_ms=latency_ms,
        )
        response["usage"] = usage
        response["provider"] = chat.deployment.provider
        if chat.dropped:
            response["dropped_params"] = chat.dropped
        self._succeed(chat.record, response, usage, latency_ms)
        return response

    def _succeed(
        self,
        record: LogRecord,
        response: dict[str, Any],
        usage: dict[str, Any],
        latency_ms: float,
        ttft_ms: float | None = None,
    ) -> None:
        record.latency_ms = round(latency_ms, 3)
        record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        record.response = response if record.request is not None else None
        record.prompt_tokens = usage.get("prompt_tokens")
        record.completion_tokens = usage.get("completion_tokens")
        record.total_tokens = usage.get("total_tokens")
        record.cached_tokens = usage.get("prompt_cache_hit_tokens")
        record.prompt_characters = usage.get("prompt_characters")
        record.response_characters = usage.get("response_characters")
        record.cost = usage.get("cost")
        self.log.submit(record)

    # --- streaming --------------------------------------------------------------------------

    async def stream(self, chat: PreparedChat) -> AsyncIterator[bytes]:
        """Open the upstream stream; failures before the first chunk raise `GatewayError`.

        Returns the byte iterator to send as the SSE body. Waiting for the first chunk
        before answering costs nothing (the caller would wait for it anyway) and lets an
        upstream that fails up front produce a real HTTP error status.
        """
        chunks = chat.provider.stream(chat.call)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except UpstreamError as exc:
            await _close(chunks)
            error = to_gateway_error(
                exc, chat.deployment.provider, caller_key=chat.call.api_key is not None
            )
            self._fail(chat.record, error)
            raise error from None
        except GatewayError as exc:
            await _close(chunks)
            self._fail(chat.record, exc)
            raise
        return self._relay(chat, chunks, first)

    async def _relay(
        self,
        chat: PreparedChat,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
    ) -> AsyncIterator[bytes]:
        assembler = StreamAssembler()
        ttft_ms: float | None = None
        include_usage = bool(
            chat.request.stream_options and chat.request.stream_options.include_usage
        )
        provider = chat.deployment.provider
        dropped = chat.dropped
        finished = False
        try:
            chunk = first
            while chunk is not None:
                had_content = assembler.saw_content
                assembler.add(chunk)
                if ttft_ms is None and assembler.saw_content and not had_content:
                    ttft_ms = (time.perf_counter() - chat.context.received) * 1000
                if chunk.get("choices"):
                    if "usage" in chunk:
                        chunk["usage"] = None  # usage is reported once, in its own chunk
                    if dropped:
                        # Said on the first chunk, where a client sees it before the answer.
                        chunk["dropped_params"], dropped = dropped, []
                    yield sse(chunk)
                chunk = await anext(chunks, None)
            latency_ms = (time.perf_counter() - chat.context.received) * 1000
            completion = assembler.completion()
            usage = enrich_usage(
                assembler.usage,
                price=chat.deployment.price,
                prompt_chars=prompt_characters(chat.body["messages"]),
                response_chars=completion_characters(completion["choices"]),
                latency_ms=latency_ms,
            )
            if include_usage:
                final = assembler.chunk([], provider=provider, usage=usage)
                if chat.dropped:
                    final["dropped_params"] = chat.dropped
                yield sse(final)
            yield SSE_DONE
            finished = True
            completion["usage"] = usage
            completion["provider"] = provider
            if chat.dropped:
                completion["dropped_params"] = chat.dropped
            self._succeed(chat.record, completion, usage, latency_ms, ttft_ms)
        except (UpstreamError, GatewayError) as exc:
            error = (
                exc
                if isinstance(exc, GatewayError)
                else to_gateway_error(exc, provider, caller_key=chat.call.api_key is not None)
            )
            # After the first byte the status is already 200: end with an error event and
            # no [DONE], so no client mistakes a truncated answer for a complete one.
            yield sse(error.envelope())
            finished = True
            self._fail_stream(chat, assembler, error, ttft_ms)
        except Exception as exc:  # a defect here must still end the stream visibly
            error = GatewayError(500, f"Internal error while relaying the stream: {exc!r}")
            yield sse(error.envelope())
            finished = True
            self._fail_stream(chat, assembler, error, ttft_ms)
        finally:
            if not finished:
                # The client went away: stop the upstream generation and record it.
                await _close(chunks)
                self._fail_stream(chat, assembler, client_closed(), ttft_ms)

    def _fail_stream(
        self,
        chat: PreparedChat,
        assembler: StreamAssembler,
        error: GatewayError,
        ttft_ms: float | None,
    ) -> None:
        record = chat.record
        record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        partial = assembler.completion()
        if record.request is not None:
            record.response = partial  # the partial answer, for the record
        record.response_characters = completion_characters(partial["choices"])
        self._fail(record, error)


async def _close(chunks: AsyncIterator[dict[str, Any]]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # the upstream may be gone: best effort
            await aclose()
