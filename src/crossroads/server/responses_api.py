"""`POST /v1/responses` (and `GET /v1/responses/{id}`): OpenAI's Responses API, served by
any configured model.

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
from crossroads.inbound.responses_request import (
    RECORD_KEY,
    chat_body,
    history,
    ignored_fields,
    parse_request,
    stored_request,
)
from crossroads.inbound.responses_stream import response_events
from crossroads.protocol.errors import GatewayError
from crossroads.protocol.sse import primed
from crossroads.server.inbound_call import STREAM_HEADERS, Received, authenticate, receive
from crossroads.server.responses import EventStreamResponse, JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.storage.records import LogRecord

__all__ = ["create_response", "get_response"]


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
        headers = received.headers()
        if ignored := ignored_fields(received.body):
            headers["x-crossroads-dropped-params"] = ",".join(ignored)
        if parsed.stream:
            frames = await received.stream(body)
            return EventStreamResponse(
                await primed(response_events(frames, shell)),
                headers={**STREAM_HEADERS, **headers},
            )
        completion = await received.complete(body)
        return JSONResponse(shell.completed(completion), headers=headers)
    except GatewayError as exc:
        response = error_response(exc)
        response.headers.update(received.headers())
        return response


async def get_response(request: Request) -> Response:
    """`GET /v1/responses/{id}`: a stored response, shown again from the request log."""
    response_id = request.path_params["response_id"]
    try:
        caller = await authenticate(request)
        record = await _stored(request.app.state.crossroads, caller.key_id, response_id, "id")
        assert record.request is not None and record.response is not None
        stored = stored_request(record.model_requested, record.request)
        if stored is None:
            raise _not_found(response_id, "id")
    except GatewayError as exc:
        return error_response(exc)
    shell = ResponseShell(stored, record.id)
    shell.created_at = int(record.created_at.timestamp())
    return JSONResponse(shell.completed(record.response))


async def _previous(received: Received, response_id: str | None) -> list[dict[str, Any]]:
    """The conversation `response_id` ended, from the request log; [] for none."""
    if response_id is None:
        return []
    record = await _stored(received.state, received.key_id, response_id, "previous_response_id")
    assert record.request is not None and record.response is not None
    return history(record.request, record.response)


async def _stored(state: AppState, key_id: str | None, response_id: str, param: str) -> LogRecord:
    """The log record of a stored, successful response made with key `key_id`."""
    log_id = response_id.removeprefix(RESPONSE_PREFIX)
    ours = response_id.startswith(RESPONSE_PREFIX)
    record = await state.log_store.get(log_id) if ours else None
    if record is None and ours:
        # Written off the request path in batches: an answer of the last moments may still
        # be queued, or its batch not yet committed (the flush waits for it). Only a miss
        # pays for the flush.
        await state.log_writer.flush()
        record = await state.log_store.get(log_id)
    if (
        record is None
        or record.key_id != key_id
        or record.status_code != 200
        or record.request is None
        or record.response is None
        or not isinstance((record.request.get("extra") or {}).get(RECORD_KEY), dict)
    ):
        raise _not_found(response_id, param)
    return record


def _not_found(response_id: str, param: str) -> GatewayError:
    shown = response_id[:64].encode("unicode_escape").decode()
    subject = "Previous response" if param == "previous_response_id" else "Response"
    return GatewayError(
        404,
        f"{subject} with id '{shown}' not found. It must be a stored response (store not "
        "false) made with the same API key.",
        param=param,
        code="previous_response_not_found" if param == "previous_response_id" else "not_found",
    )
