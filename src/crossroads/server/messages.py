"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API, served by
any configured model; `GET /v1/models` in Anthropic's shape for Anthropic clients.

Thin routes: receive (server/inbound_call.py), translate (inbound/anthropic_*), serve
through the pipeline, translate back. Every error, the gateway's own included, leaves in
Anthropic's envelope, which is what Anthropic's SDKs and Claude Code parse.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from crossroads.access import check_model_allowed
from crossroads.inbound.anthropic_answer import anthropic_message
from crossroads.inbound.anthropic_errors import anthropic_envelope
from crossroads.inbound.anthropic_request import chat_body, parse_request
from crossroads.inbound.anthropic_stream import anthropic_events
from crossroads.learned.serve import ROUTER_MODEL
from crossroads.protocol.errors import GatewayError
from crossroads.protocol.sse import primed
from crossroads.server import routes
from crossroads.server.inbound_call import STREAM_HEADERS, Received, authenticate, receive
from crossroads.server.responses import EventStreamResponse, JSONResponse
from crossroads.server.state import AppState
from crossroads.usage import estimate_tokens, prompt_characters

__all__ = ["anthropic_models", "count_tokens", "create_message", "list_models"]


def _headers(received: Received) -> dict[str, str]:
    """The gateway's headers, and the log id as the `request-id` Anthropic's SDKs read."""
    return {**received.headers(), "request-id": received.context.log_id}


def _error(error: GatewayError, received: Received | None = None) -> Response:
    headers = dict(error.headers)
    request_id = None
    if received is not None:
        headers.update(_headers(received))
        request_id = received.context.log_id
    return JSONResponse(
        anthropic_envelope(error, request_id), status_code=error.status, headers=headers
    )


async def create_message(request: Request) -> Response:
    try:
        received = await receive(request, api_key_header=True)
    except GatewayError as exc:
        return _error(exc)
    try:
        try:
            parsed = parse_request(received.body)
            body = chat_body(parsed)
        except GatewayError as exc:
            raise received.reject(exc) from None
        log_id = received.context.log_id
        if parsed.stream:
            estimate = estimate_tokens(prompt_characters(body["messages"]))
            frames = await received.stream(body)
            return EventStreamResponse(
                await primed(
                    anthropic_events(frames, parsed.model, log_id, estimate, parsed.stop_sequences)
                ),
                headers={**STREAM_HEADERS, **_headers(received)},
            )
        completion = await received.complete(body)
        return JSONResponse(
            anthropic_message(completion, parsed.model, log_id, parsed.stop_sequences),
            headers=_headers(received),
        )
    except GatewayError as exc:
        return _error(exc, received)


async def count_tokens(request: Request) -> Response:
    """`{"input_tokens": n}`: an estimate from the text the model would read (about four
    characters a token, the gateway's own estimate for limits), since the serving model's
    tokenizer is not known before the request is routed. Nothing is sent upstream."""
    try:
        received = await receive(request, api_key_header=True)
        parsed = parse_request(received.body, count_only=True)
        body = chat_body(parsed)
        names = [name for name in parsed.model.split(",") if name != ROUTER_MODEL]
        for name in names:  # a model serving would refuse is refused here too
            received.state.catalog.resolve(name)
        check_model_allowed(received.context.virtual_key, names)
    except GatewayError as exc:
        return _error(exc)
    characters = sum(len(text) for text in _texts(body["messages"]))
    characters += sum(len(orjson.dumps(tool)) for tool in body.get("tools") or ())
    tokens = estimate_tokens(characters) + 3 * len(body["messages"])
    return JSONResponse({"input_tokens": tokens})


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [part["text"] for part in content if part.get("type") == "text"]
        for call in message.get("tool_calls") or ():
            out.append(call["function"]["arguments"])
    return out


async def list_models(request: Request) -> Response:
    """`GET /v1/models`: Anthropic's shape for an Anthropic client (its SDKs send
    `anthropic-version` with every request), OpenAI's for everyone else."""
    if "anthropic-version" not in request.headers:
        return await routes.list_models(request)
    try:
        caller = await authenticate(request, api_key_header=True)
    except GatewayError as exc:
        return _error(exc)
    state: AppState = request.app.state.crossroads
    listing = state.catalog.listing()
    key = caller.virtual_key
    if key is not None and key.models is not None:
        allowed = set(key.models)
        listing["data"] = [m for m in listing["data"] if m["id"] in allowed]
    return JSONResponse(anthropic_models(listing))


def anthropic_models(listing: dict[str, Any]) -> dict[str, Any]:
    """`GET /v1/models` as Anthropic's Models API pages it, for an OpenAI-shaped listing."""
    data = [
        {
            "type": "model",
            "id": model["id"],
            "display_name": model.get("description") or model["id"],
            "created_at": datetime.fromtimestamp(model["created"], UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        for model in listing["data"]
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
