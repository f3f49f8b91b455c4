"""`PATCH /v1/logs/{id}` and `PATCH /v1/logs?filters`: label logged records after the fact.

The body says what changes — `metadata` keys set (null removes one), `tags` replaced,
`add_tags`, `remove_tags` — and nothing else about a record can change. The bulk form takes
exactly `GET /v1/logs`'s filters (server/log_query.py) in the query string and edits every
record they match, so what a caller sees in a listing is what it edits; it needs at least one
filter, so a bare `PATCH /v1/logs` cannot relabel the whole log by mistake. A key edits only
the records it may read: its own, or every key's with `logs = "all"`.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.validation import validate_body
from crossroads.server.log_query import log_query
from crossroads.server.request_body import read_object
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.routes import record_json
from crossroads.server.state import AppState
from crossroads.storage.log_edits import LogEdit, edit_logs
from crossroads.storage.log_terms import check_filter_key

__all__ = ["LogEditBody", "log_edit_routes"]

_log = logging.getLogger("crossroads.logs")

_MAX_BODY = 64 * 1024
_MAX_TAGS = 64


def _key(key: str) -> str:
    check_filter_key(key)
    return key


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        _key(key)
        if item is not None and not isinstance(item, str):
            raise ValueError(
                f"metadata values must be strings (or null to remove the key); {key!r} is not"
            )
        if item is not None and ("\x00" in item or len(item) > 1024):
            raise ValueError(f"metadata value of {key!r} must be at most 1024 characters, no NUL")
    return value


def _tag(tag: str) -> str:
    if not tag or len(tag) > 256 or "\x00" in tag:
        raise ValueError("tags must be 1 to 256 characters, without NUL")
    return tag


_Tag = Annotated[str, AfterValidator(_tag)]
_Tags = Annotated[list[_Tag], Field(max_length=_MAX_TAGS)]


class LogEditBody(BaseModel):
    """What `PATCH /v1/logs…` accepts: at least one change."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metadata: Annotated[dict[str, str | None], AfterValidator(_metadata)] | None = None
    tags: _Tags | None = None
    add_tags: _Tags = []
    remove_tags: _Tags = []

    @model_validator(mode="after")
    def _something(self) -> LogEditBody:
        if not self.metadata and self.tags is None and not self.add_tags and not self.remove_tags:
            raise ValueError("give at least one of metadata, tags, add_tags, remove_tags")
        return self

    def edit(self) -> LogEdit:
        return LogEdit(
            metadata=self.metadata or {},
            add_tags=self.add_tags,
            remove_tags=self.remove_tags,
            set_tags=self.tags,
        )


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.crossroads
    return state


async def _caller(request: Request) -> tuple[str | None, bool]:
    state = _state(request)
    client = request.client
    caller = await state.keys.authenticate(
        request.headers.get("authorization"), client.host if client else None
    )
    return caller.key_id, state.may_read_all_logs(caller.key_id)


async def _body(request: Request) -> LogEditBody:
    body = await read_object(request, _MAX_BODY, '{"metadata": {...}, "add_tags": [...]}')
    return validate_body(LogEditBody, body, "Log edit")


def _unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The request log is unavailable; nothing was changed. Retry shortly.",
        code="log_store_unavailable",
    )


async def patch_log(request: Request) -> Response:
    """Edit one record's metadata and tags; answer with the record as it now is."""
    state = _state(request)
    log_id = request.path_params["log_id"]
    try:
        key_id, read_all = await _caller(request)
        body = await _body(request)
        await state.log_writer.flush()  # the record may still be queued
        record = None if "\x00" in log_id else await state.log_store.get(log_id)
        if record is None or (not read_all and record.key_id != key_id):
            shown = log_id[:64].encode("unicode_escape").decode()
            raise GatewayError(
                404, f"No request log record with id '{shown}'.", code="log_not_found"
            )
        await edit_logs(state.log_store.engine, body.edit(), ids=[log_id])
        record = await state.log_store.get(log_id)
    except GatewayError as exc:
        return error_response(exc)
    except (sa_exc.SQLAlchemyError, OSError):
        _log.exception("log edit: storage failed")
        return error_response(_unavailable())
    assert record is not None
    return JSONResponse(record_json(record))


async def patch_logs(request: Request) -> Response:
    """Edit every record the query's filters match; answer with how many changed."""
    state = _state(request)
    try:
        key_id, read_all = await _caller(request)
        for name in ("limit", "before"):
            if name in request.query_params:
                raise bad_request(
                    f"'{name}' does not apply to a bulk edit, which edits every matching record.",
                    param=name,
                    code="unknown_parameter",
                )
        query = log_query(request.query_params)
        given = {k: v for k, v in query.filters.items() if v not in (None, [], {})}
        if not given:
            raise bad_request(
                "A bulk edit needs at least one filter (model, tags, metadata.KEY, start, …) "
                "in the query string; to edit one record use PATCH /v1/logs/{id}.",
                code="missing_filter",
            )
        body = await _body(request)
        await state.log_writer.flush()
        changed = await edit_logs(
            state.log_store.engine,
            body.edit(),
            key_id=None if read_all else key_id,
            **given,
        )
    except GatewayError as exc:
        return error_response(exc)
    except (sa_exc.SQLAlchemyError, OSError):
        _log.exception("log bulk edit: storage failed")
        return error_response(_unavailable())
    return JSONResponse({"object": "request_log.bulk_update", "updated": changed})


def log_edit_routes() -> list[Route]:
    return [
        Route("/v1/logs", patch_logs, methods=["PATCH"]),
        Route("/v1/logs/{log_id}", patch_log, methods=["PATCH"]),
    ]
