"""Feedback on logged answers, and the one owner of its SQL.

A deployment learns from its own traffic by joining the request log with the scores callers
give its answers (`POST /v1/feedback`). Feedback is append-only: rating a record again adds a
row, and the latest row for a record (by `created_at`) is the one that counts, so a caller can
change its mind without anything being overwritten. There is no foreign key to `request_log`:
log retention deletes records freely, and feedback whose record is gone joins with nothing.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.migrate import upgrade
from crossroads.storage.schema import feedback, request_log

__all__ = ["COMMENT_MAX_CHARS", "Feedback", "FeedbackStore", "RatedAnswer", "check_feedback"]

COMMENT_MAX_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Feedback:
    id: str  # "fb_" + 24 hex characters
    log_id: str  # the request-log record it rates
    score: float  # 0 (bad) to 1 (good)
    comment: str | None
    key_id: str | None  # who gave it; None in loopback-only mode
    created_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class RatedAnswer:
    """A served request whose body was stored, with the latest score given to its answer."""

    log_id: str
    created_at: datetime  # when the request arrived, UTC
    model_served: str  # the public model name that answered
    request: dict[str, Any]  # the caller's body, as logged
    score: float
    cost: float | None  # USD
    completion_tokens: int | None


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Feedback))
_COLUMNS: tuple[sa.Column[Any], ...] = tuple(feedback.c[name] for name in _FIELDS)


def _to_record(row: Mapping[Any, Any]) -> Feedback:
    return Feedback(**{name: row[name] for name in _FIELDS})


def check_feedback(log_id: str, score: float, comment: str | None) -> None:
    """Raise `ValueError` saying what is wrong with a feedback row, before it is written."""
    if not log_id or "\x00" in log_id:
        raise ValueError("log_id must be a non-empty string without NUL characters")
    if isinstance(score, bool) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be a number from 0 to 1, got {score!r}")
    if comment is not None:
        if len(comment) > COMMENT_MAX_CHARS:
            raise ValueError(f"comment must be at most {COMMENT_MAX_CHARS} characters")
        if "\x00" in comment:
            raise ValueError("comment must not contain NUL characters")


class FeedbackStore:
    """Feedback in one database. Shares `engine` with its owner and never disposes of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def open(self) -> None:
        """Bring the schema up to date (the same migrations `LogStore.open` runs)."""
        await upgrade(self._engine)

    async def add(
        self,
        log_id: str,
        score: float,
        *,
        comment: str | None = None,
        key_id: str | None = None,
    ) -> Feedback:
        """Store one score for the record `log_id` (which this store does not check exists)."""
        check_feedback(log_id, score, comment)
        record = Feedback(
            id="fb_" + secrets.token_hex(12),
            log_id=log_id,
            score=float(score),
            comment=comment,
            key_id=key_id,
            created_at=datetime.now(UTC),
        )
        row = dataclasses.asdict(record)
        async with self._engine.begin() as connection:
            await connection.execute(feedback.insert(), row)
        return record

    async def list(
        self, *, log_id: str | None = None, key_id: str | None = None
    ) -> Sequence[Feedback]:
        """Feedback oldest first, for one record and/or given by one key."""
        c = feedback.c
        conditions: list[sa.ColumnElement[bool]] = []
        if log_id is not None:
            conditions.append(c.log_id == log_id)
        if key_id is not None:
            conditions.append(c.key_id == key_id)
        statement = sa.select(*_COLUMNS).where(*conditions).order_by(c.created_at, c.id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [_to_record(row) for row in rows]

    async def rated_answers(self, *, since: datetime | None = None) -> Sequence[RatedAnswer]:
        """Successful requests (status < 400) with a stored body and at least one feedback,
        oldest first, each with its latest score; `since` bounds the request's arrival time."""
        f, r = feedback.c, request_log.c
        latest = sa.select(
            f.log_id,
            f.score,
            sa.func.row_number()
            .over(partition_by=f.log_id, order_by=(f.created_at.desc(), f.id.desc()))
            .label("rank"),
        ).subquery()
        conditions = [
            latest.c.rank == 1,
            r.request.is_not(None),
            r.model_served.is_not(None),
            r.status_code < 400,
        ]
        if since is not None:
            conditions.append(r.created_at >= since)
        statement = (
            sa.select(
                r.id,
                r.created_at,
                r.model_served,
                r.request,
                r.cost,
                r.completion_tokens,
                latest.c.score,
            )
            .join(latest, latest.c.log_id == r.id)
            .where(*conditions)
            .order_by(r.created_at, r.id)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [
            RatedAnswer(
                log_id=row["id"],
                created_at=row["created_at"],
                model_served=row["model_served"],
                request=row["request"],
                score=float(row["score"]),
                cost=row["cost"],
                completion_tokens=row["completion_tokens"],
            )
            for row in rows
        ]
