"""`POST /v1/responses`: OpenAI's Responses API, served by any configured model.

Thin route: receive (server/inbound_call.py), resolve `previous_response_id` from the
request log, translate (inbound/responses_*), serve through the pipeline, translate back.
A previous response is found only among the caller's own key's records — another key's id
is as unknown as one that never existed — and only when it was stored (`store` not false).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.inbound.responses_answer import RESPONSE_PREFIX, ResponseShell
from crossroads.inbound.responses_request import chat_body, history, parse_request
from crossroads.inbound.responses_stream import response_events
from crossroads.protocol.errors import GatewayError
from crossroads.protocol.sse import primed
from crossroads.server.inbound_call import STREAM_HEADERS, Received, receive
from crossroads.server.responses import EventStreamResponse, JSONResponse, error_response

__all__ = ["create_response"]


async def create_response(request: Request) -> Response:
    try:
        received = await receive(request)
    except GatewayError as exc:
        return error_response(exc)
    try:
        try:
            parsed = parse_request(received.body)
            earlier = await _previous(received, parsed.previous_response_id)
            body = chat_body(parsed, earlier)
        except GatewayError as exc:
            raise received.reject(exc) from None
        shell = ResponseShell(parsed, received.context.log_id)
        if parsed.stream:
            frames = await received.stream(body)
            return EventStreamResponse(
                await primed(response_events(frames, shell)),
                headers={**STREAM_HEADERS, **received.headers()},
            )
        completion = await received.complete(body)
        return JSONResponse(shell.completed(completion), headers=received.headers())
    except GatewayError as exc:
        response = error_response(exc)
        response.headers.update(received.headers())
        return response


async def _previous(received: Received, response_id: str | None) -> list[dict[str, Any]]:
    """The conversation `response_id` ended, from the request log; [] for none."""
    if response_id is None:
        return []
    log_id = response_id.removeprefix(RESPONSE_PREFIX)
    state = received.state
    record = await state.log_store.get(log_id) if response_id.startswith(RESPONSE_PREFIX) else None
    if record is None and response_id.startswith(RESPONSE_PREFIX):
        # Written off the request path in batches: an answer of the last moments may still
        # be queued, or its batch not yet committed (the flush waits for it). Only a miss
        # pays for the flush.
        await state.log_writer.flush()
        record = await state.log_store.get(log_id)
    found = (
        record is not None
        and record.key_id == received.key_id
        and record.status_code == 200
        and record.request is not None
        and record.response is not None
        and (record.request.get("extra") or {}).get("responses") is not None
    )
    if not found or record is None or record.request is None or record.response is None:
        shown = response_id[:64].encode("unicode_escape").decode()
        raise GatewayError(
            404,
            f"Previous response with id '{shown}' not found. It must be a stored response "
            "(store not false) made with the same API key.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return history(record.request, record.response)
