"""`POST /v1/feedback`: a caller scores an answer it got, so the router can learn from it.

The body names a request-log record (the `x-crossroads-log-id` header of the answer), a
score from 0 to 1 (true and false mean 1 and 0) and an optional comment. A caller may rate
what it may read: the same rule as `GET /v1/logs/{id}`, so a record of another key is a 404,
exactly like one that does not exist. The log is written in batches, so an answer rated
right after it arrived may not be stored yet: an id not found is looked up again after the
log writer has flushed what it holds, which makes the rating work at once at the cost of an
early write.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.json_body import decode_json_body
from crossroads.protocol.validation import validate_body
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.storage.feedback_store import COMMENT_MAX_CHARS, Feedback, FeedbackStore

__all__ = ["FeedbackBody", "create_feedback", "feedback_json"]

_log = logging.getLogger("crossroads.feedback")

_MAX_BODY = 64 * 1024


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def _score(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"must be a number from 0 to 1, or true / false; got {_shown(value)}")
    return float(value)


def _comment(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class FeedbackBody(BaseModel):
    """What `POST /v1/feedback` accepts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    log_id: Annotated[str, Field(min_length=1, max_length=256)]
    score: Annotated[float, BeforeValidator(_score)]
    comment: (
        Annotated[str, Field(max_length=COMMENT_MAX_CHARS), BeforeValidator(_comment)] | None
    ) = None


def feedback_json(record: Feedback) -> dict[str, Any]:
    return {
        "object": "feedback",
        "id": record.id,
        "log_id": record.log_id,
        "score": record.score,
        "comment": record.comment,
        "key_id": record.key_id,
        "created_at": record.created_at.isoformat(),
    }


async def _read(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    parts: list[bytes] = []
    size = int(declared) if declared is not None and declared.isdigit() else 0
    if size <= _MAX_BODY:
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > _MAX_BODY:
                break
            parts.append(part)
    if size > _MAX_BODY:
        raise GatewayError(
            413, f"Feedback bodies are limited to {_MAX_BODY} bytes.", code="request_too_large"
        )
    return b"".join(parts)


def _parse(raw: bytes) -> FeedbackBody:
    body = decode_json_body(raw)
    if not isinstance(body, dict):
        raise bad_request(
            'The request body must be a JSON object: {"log_id": …, "score": …}.',
            code="invalid_value",
        )
    return validate_body(FeedbackBody, body, "Feedback")


async def _visible(state: AppState, log_id: str, key_id: str | None) -> bool:
    """Whether record `log_id` exists and the caller's key may read it."""
    if "\x00" in log_id:
        return False  # no record has one, and PostgreSQL text cannot hold it
    record = await state.log_store.get(log_id)
    if record is None:
        # It may be queued, or in a batch being written as we looked: `flush` returns once
        # everything submitted so far is written (it waits for a batch in flight).
        await state.log_writer.flush()
        record = await state.log_store.get(log_id)
    if record is None:
        return False
    return state.may_read_all_logs(key_id) or record.key_id == key_id


async def create_feedback(request: Request) -> Response:
    """Store a score for a logged answer; answer with the stored feedback."""
    state: AppState = request.app.state.crossroads
    try:
        client = request.client
        caller = await state.keys.authenticate(
            request.headers.get("authorization"), client.host if client else None
        )
        body = _parse(await _read(request))
        if not await _visible(state, body.log_id, caller.key_id):
            raise GatewayError(
                404,
                f"No request log record with id '{body.log_id}'.",
                param="log_id",
                code="log_not_found",
            )
        record = await FeedbackStore(state.log_store.engine).add(
            body.log_id, body.score, comment=body.comment, key_id=caller.key_id
        )
    except GatewayError as exc:
        return error_response(exc)
    except (sa_exc.SQLAlchemyError, OSError):
        _log.exception("feedback: storage failed")
        return error_response(
            GatewayError(
                503,
                "The request log is unavailable; the feedback was not stored. Retry shortly.",
                code="log_store_unavailable",
            )
        )
    return JSONResponse(feedback_json(record))
