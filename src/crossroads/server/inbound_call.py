"""What every inbound API shares: receive a request as chat completions do, serve its
translated body through the same pipeline.

Anthropic's Messages, the Responses API and legacy completions differ only in how they
translate; authentication, the call context (session, tags, timeouts), the body limit, the
request log and the pipeline are the chat route's own, so a request is limited, routed,
guarded and recorded the same whichever API it came in by. Errors are raised as
`GatewayError`; each route renders them in its own API's envelope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from crossroads.pipeline import CallContext
from crossroads.protocol.errors import GatewayError
from crossroads.protocol.json_body import decode_json_body
from crossroads.server.auth import Caller
from crossroads.server.routes import (
    _STREAM_HEADERS,
    _read_body,
    _seconds_header,
    _unless_disconnected,
)
from crossroads.server.state import AppState
from crossroads.storage.records import new_log_id

__all__ = ["STREAM_HEADERS", "Received", "authenticate", "receive"]

STREAM_HEADERS = _STREAM_HEADERS


@dataclass(slots=True)
class Received:
    """An authenticated request and its decoded body, not yet translated."""

    request: Request
    state: AppState
    context: CallContext
    body: Any

    @property
    def key_id(self) -> str | None:
        return self.context.key_id

    def reject(self, error: GatewayError) -> GatewayError:
        """Record a request refused before the pipeline saw it (a translation error)."""
        self.state.gateway.reject(error, self.context, self.body)
        return error

    def fork(self) -> Received:
        """The same request with a log record of its own, for one more pipeline call
        (legacy completions serve a list of prompts as one call per prompt)."""
        context = dataclasses.replace(self.context, log_id=new_log_id())
        return Received(self.request, self.state, context, self.body)

    def headers(self) -> dict[str, str]:
        """The log id and the key's rate-limit headers, for any answer."""
        return {"x-crossroads-log-id": self.context.log_id, **(self.context.limit_headers or {})}

    async def complete(self, chat_body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for `chat_body`, through the whole pipeline."""
        gateway = self.state.gateway
        chat = gateway.prepare(chat_body, self.context)
        return await _unless_disconnected(self.request, gateway.complete(chat))

    async def stream(self, chat_body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The chat-completions event stream for `chat_body` (its `stream` set), opened."""
        gateway = self.state.gateway
        chat = gateway.prepare(chat_body, self.context)
        return await gateway.stream(chat)


async def authenticate(request: Request, *, api_key_header: bool = False) -> Caller:
    """The caller; `api_key_header`: the key may come in `x-api-key`, where Anthropic's
    SDKs send it, instead of `authorization`."""
    state: AppState = request.app.state.crossroads
    authorization = request.headers.get("authorization")
    if authorization is None and api_key_header and (key := request.headers.get("x-api-key")):
        authorization = f"Bearer {key}"
    client = request.client
    return await state.keys.authenticate(authorization, client.host if client else None)


async def receive(request: Request, *, api_key_header: bool = False) -> Received:
    """Authenticate and read the body as the chat route does; a `GatewayError` otherwise."""
    state: AppState = request.app.state.crossroads
    headers = request.headers
    caller = await authenticate(request, api_key_header=api_key_header)
    tags = headers.get("x-crossroads-tags")
    context = CallContext(
        key_id=caller.key_id,
        virtual_key=caller.virtual_key,
        session_header=headers.get("x-session-id") or None,
        tags=[t.strip() for t in tags.split(",") if t.strip()] if tags else None,
    )
    try:
        context.timeout = _seconds_header(headers, "x-crossroads-timeout")
        context.attempt_timeout = _seconds_header(headers, "x-crossroads-attempt-timeout")
        body = decode_json_body(await _read_body(request, state.config.server.max_body_bytes))
    except GatewayError as exc:
        state.gateway.reject(exc, context)
        raise
    return Received(request, state, context, body)
