"""Thin routes: authenticate, parse, call one object, pick the response type.

Each handler turns `GatewayError` into the OpenAI envelope itself rather than relying on
middleware, which keeps the hot path free of extra ASGI layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from typing import Any, TypeVar

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from crossroads.pipeline import CallContext
from crossroads.protocol.errors import GatewayError, bad_request, client_closed
from crossroads.protocol.json_body import decode_json_body
from crossroads.server.auth import Caller
from crossroads.server.hangup import ClientLeft, HangUp
from crossroads.server.log_query import log_query, usage_query
from crossroads.server.request_body import read_bytes
from crossroads.server.responses import EventStreamResponse, JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.storage.records import LogRecord
from crossroads.storage.usage_store import usage_totals

__all__ = [
    "chat_completions",
    "get_log",
    "health",
    "list_logs",
    "list_models",
    "metrics",
    "openapi",
    "provider_stats",
    "ready",
    "usage",
]

T = TypeVar("T")

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.crossroads
    return state


async def _authenticate(request: Request) -> Caller:
    client = request.client
    return await _state(request).keys.authenticate(
        request.headers.get("authorization"), client.host if client else None
    )


async def _read_body(request: Request, limit: int) -> bytes:
    return await read_bytes(request, limit, too_large=_too_large)


# The shortest timeout a caller may ask for: anything shorter cannot be met by any upstream
# and only measures the gateway's own scheduling.
_MIN_TIMEOUT_S = 0.01


def _seconds_header(headers: Any, name: str) -> float | None:
    """A positive number of seconds from header `name`, or None when it is absent."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not _MIN_TIMEOUT_S <= seconds <= 3600 or seconds != seconds:
        raise bad_request(
            f"Header '{name}' must be a number of seconds from {_MIN_TIMEOUT_S} to 3600, "
            f"got {value!r}.",
            param=name,
            code="invalid_value",
        )
    return seconds


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than this gateway accepts ({limit} bytes). "
        "Send fewer or shorter messages, or raise server.max_body_bytes.",
        code="request_too_large",
    )


def _header_values(request: Request) -> dict[str, str]:
    """The request's headers by (lowercase) name, the first value of each as Starlette's
    `Headers.get` gives it, in one pass: through Starlette each header that is absent — and
    a chat request asks for five that usually are — costs a raised and caught KeyError."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(request.scope["headers"])}


async def chat_completions(request: Request) -> Response:
    state = _state(request)
    headers = _header_values(request)
    try:
        caller = await _authenticate(request)
    except GatewayError as exc:
        return error_response(exc)
    tags = headers.get("x-crossroads-tags")
    context = CallContext(
        key_id=caller.key_id,
        virtual_key=caller.virtual_key,
        session_header=headers.get("x-session-id") or None,
        tags=[t.strip() for t in tags.split(",") if t.strip()] if tags else None,
        cache_header=headers.get("x-crossroads-cache"),
    )
    gateway = state.gateway
    body: Any = None
    try:
        context.timeout = _seconds_header(headers, "x-crossroads-timeout")
        context.attempt_timeout = _seconds_header(headers, "x-crossroads-attempt-timeout")
        raw = await _read_body(request, state.config.server.max_body_bytes)
        body = decode_json_body(raw)
    except GatewayError as exc:
        gateway.reject(exc, context)
        return error_response(exc)
    log_header = {"x-crossroads-log-id": context.log_id}
    try:
        chat = gateway.prepare(body, context)
        if chat.request.stream:
            chunks = await gateway.stream(chat)
            return EventStreamResponse(
                chunks, headers={**_STREAM_HEADERS, **log_header, **(context.limit_headers or {})}
            )
        answer = await _unless_disconnected(request, gateway.complete(chat))
        return JSONResponse(answer, headers={**log_header, **(context.limit_headers or {})})
    except GatewayError as exc:
        response = error_response(exc)
        response.headers.update(log_header)
        return response


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, cancelling it if the client hangs up first (see `HangUp`)."""
    try:
        with HangUp(request.receive):
            return await work
    except ClientLeft:
        raise client_closed() from None


async def list_models(request: Request) -> Response:
    """The configured models; a virtual key with a `models` list sees only those."""
    try:
        caller = await _authenticate(request)
    except GatewayError as exc:
        return error_response(exc)
    listing = _state(request).catalog.listing()
    key = caller.virtual_key
    if key is not None and key.models is not None:
        allowed = set(key.models)
        listing["data"] = [m for m in listing["data"] if m["id"] in allowed]
    return JSONResponse(listing)


async def provider_stats(request: Request) -> Response:
    """Live stats per deployment over the sliding window, with its circuit breaker's state.

    Every configured deployment is listed, measured or not, keyed `provider/upstream_model`;
    with a shared state, `cluster` adds every replica's snapshot and the totals.
    """
    try:
        await _authenticate(request)
    except GatewayError as exc:
        return error_response(exc)
    state = _state(request)
    route_state = state.gateway.route_state
    deployments: dict[str, Any] = {}
    for entry in state.catalog:
        for deployment in entry.deployments:
            row = deployments.get(deployment.key)
            if row is None:
                row = deployments[deployment.key] = {
                    "provider": deployment.provider,
                    "upstream_model": deployment.upstream_model,
                    "models": [],
                    **route_state.stats.get(deployment.key).snapshot(),
                    "breaker": route_state.breakers.get(deployment.key).snapshot(),
                }
            row["models"].append(deployment.model)
    if state.shared is not None:
        try:
            cluster = await state.shared.cluster_stats(deployments)
        except (RedisError, OSError) as exc:
            cluster = {key: {"error": f"shared state unreachable: {exc}"} for key in deployments}
        for key, row in deployments.items():
            row["cluster"] = cluster[key]
    return JSONResponse(
        {
            "object": "provider_stats",
            "window_s": route_state.config.stats_window,
            "deployments": deployments,
        }
    )


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    if reasons := _state(request).not_ready():
        return JSONResponse({"ready": False, "reasons": reasons}, status_code=503)
    return JSONResponse({"ready": True})


async def metrics(request: Request) -> Response:
    """Prometheus metrics, with the same access as reading the whole request log.

    Unlike /health and /ready, which say only whether the gateway is up, metrics name every
    key and what it spent: they are an aggregate of the log, so they need what
    `GET /v1/logs` needs to show every record. With keys configured that is a key with
    `logs = "all"` (Prometheus sends one with `authorization: {credentials: ...}` in its
    scrape config); in loopback-only mode, any client on this machine.
    """
    try:
        key_id, read_all = await _visible_key(request)
    except GatewayError as exc:
        return error_response(exc)
    if not read_all:
        return error_response(
            GatewayError(
                403,
                f"Key '{key_id}' may not read metrics: they cover every key. "
                'Use a key with logs = "all".',
                code="permission_denied",
            )
        )
    body, content_type = _state(request).metrics.render()
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> Response:
    return JSONResponse(_state(request).openapi_document)


# --- request log -----------------------------------------------------------------------------

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(LogRecord))


def record_json(record: LogRecord) -> dict[str, Any]:
    # Field by field, not `dataclasses.asdict`, which copies the bodies recursively.
    data = {name: getattr(record, name) for name in _RECORD_FIELDS}
    data["object"] = "request_log"
    data["created_at"] = record.created_at.isoformat()
    return data


async def _visible_key(request: Request) -> tuple[str | None, bool]:
    """The caller's key_id, and whether it may read every key's records."""
    key_id = (await _authenticate(request)).key_id
    return key_id, _state(request).may_read_all_logs(key_id)


async def list_logs(request: Request) -> Response:
    try:
        key_id, read_all = await _visible_key(request)
        query = log_query(request.query_params)
        records, has_more = await _state(request).log_store.page(
            limit=query.limit, key_id=None if read_all else key_id, **query.filters
        )
    except GatewayError as exc:
        return error_response(exc)
    return JSONResponse(
        {
            "object": "list",
            "data": [record_json(r) for r in records],
            "has_more": has_more,
            "next_before": records[-1].id if has_more else None,
        }
    )


async def usage(request: Request) -> Response:
    """`GET /v1/usage?start=&end=&group_by=day|model|key|provider`: requests, tokens and
    cost summed from the request log. A key that may not read every record sees its own."""
    try:
        key_id, read_all = await _visible_key(request)
        query = usage_query(request.query_params)
        group_by, start, end = query.group_by, query.start, query.end
        rows = await usage_totals(
            _state(request).log_store.engine,
            group_by=group_by,
            start=start,
            end=end,
            key_id=None if read_all else key_id,
        )
    except GatewayError as exc:
        return error_response(exc)
    total = {
        name: sum(row[name] for row in rows)
        for name in ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")
    }
    total["cost"] = round(sum(row["cost"] for row in rows), 12)
    return JSONResponse(
        {
            "object": "usage",
            "group_by": group_by,
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "data": rows,
            "total": total,
        }
    )


async def get_log(request: Request) -> Response:
    try:
        key_id, read_all = await _visible_key(request)
    except GatewayError as exc:
        return error_response(exc)
    log_id = request.path_params["log_id"]
    record = await _state(request).log_store.get(log_id)
    if record is None or (not read_all and record.key_id != key_id):
        shown = log_id[:64].encode("unicode_escape").decode()  # a bad id, shown safely
        return error_response(
            GatewayError(404, f"No request log record with id '{shown}'.", code="log_not_found")
        )
    return JSONResponse(record_json(record))
