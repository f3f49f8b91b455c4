"""Log retention: the request log never grows without bound.

A background task deletes records older than `max_age` and, beyond the newest
`max_rows`, the oldest ones. Deletes run in batches of a few thousand rows, each its own
short transaction, so a large backlog never holds a long lock against the log writer.
The index on `created_at` serves both the cut-off lookup and the deletes.

The same pass prunes the dashboard's hourly rollup (`request_rollup`) on its own, longer
clock (`rollup_max_age`): its rows are few, so it can outlive the log, but not forever. It
is deleted a day of hours per transaction, oldest first.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.periodic import Periodic
from crossroads.storage.dashboard_store import hour_of
from crossroads.storage.schema import request_log, request_rollup

__all__ = ["LogPruner", "rollup_max_age"]

logger = logging.getLogger("crossroads.retention")

_BATCH = 5000


class LogPruner:
    """Deletes what retention no longer keeps; `start()` runs it every `interval` seconds."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_age: timedelta | None,
        max_rows: int | None,
        rollup_max_age: timedelta | None = None,
        interval: float = 300.0,
    ) -> None:
        self._engine = engine
        self._max_age = max_age
        self._max_rows = max_rows
        self._rollup_max_age = rollup_max_age
        self._periodic = Periodic(
            self._prune_and_report,
            interval,
            name="log-pruner",
            logger=logger,
            failure="log retention pass failed",
            immediately=True,
        )

    @property
    def enabled(self) -> bool:
        return any(
            limit is not None for limit in (self._max_age, self._max_rows, self._rollup_max_age)
        )

    def start(self) -> None:
        if self.enabled:
            self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()

    async def _prune_and_report(self) -> None:
        if deleted := await self.prune():
            logger.info("log retention deleted %d records", deleted)
        if deleted := await self.prune_rollup():
            logger.info("rollup retention deleted %d hourly rows", deleted)

    async def prune(self, now: datetime | None = None) -> int:
        """One retention pass; returns how many records it deleted."""
        deleted = 0
        if self._max_age is not None:
            cutoff = (now or datetime.now(UTC)) - self._max_age
            deleted += await self._delete_before(cutoff)
        if self._max_rows is not None:
            deleted += await self._trim_to(self._max_rows)
        return deleted

    async def prune_rollup(self, now: datetime | None = None) -> int:
        """Delete the rollup's hours older than `rollup_max_age`; returns how many rows.

        The hour the cut-off falls in is kept whole."""
        if self._rollup_max_age is None:
            return 0
        cutoff = hour_of((now or datetime.now(UTC)) - self._rollup_max_age)
        hour = request_rollup.c.hour
        deleted = 0
        while True:
            async with self._engine.begin() as connection:
                oldest = (await connection.execute(sa.select(sa.func.min(hour)))).scalar()
                if oldest is None or oldest >= cutoff:
                    return deleted
                result = await connection.execute(
                    sa.delete(request_rollup).where(hour < min(oldest + timedelta(days=1), cutoff))
                )
            deleted += result.rowcount

    async def _delete_before(self, cutoff: datetime) -> int:
        c = request_log.c
        oldest = sa.select(c.id).where(c.created_at < cutoff).order_by(c.created_at)
        return await self._delete_batches(oldest)

    async def _trim_to(self, keep: int) -> int:
        c = request_log.c
        async with self._engine.connect() as connection:
            count = sa.select(sa.func.count()).select_from(request_log)
            total = (await connection.execute(count)).scalar_one()
        excess = int(total) - keep
        if excess <= 0:
            return 0
        deleted = 0
        while excess > 0:
            batch = min(excess, _BATCH)
            oldest = sa.select(c.id).order_by(c.created_at, c.id).limit(batch)
            async with self._engine.begin() as connection:
                result = await connection.execute(
                    sa.delete(request_log).where(c.id.in_(oldest.scalar_subquery()))
                )
            if not result.rowcount:
                break
            deleted += result.rowcount
            excess -= result.rowcount
        return deleted

    async def _delete_batches(self, oldest: sa.Select[tuple[str]]) -> int:
        c = request_log.c
        deleted = 0
        while True:
            async with self._engine.begin() as connection:
                result = await connection.execute(
                    sa.delete(request_log).where(c.id.in_(oldest.limit(_BATCH).scalar_subquery()))
                )
            deleted += result.rowcount
            if result.rowcount < _BATCH:
                return deleted


def rollup_max_age(days: float) -> timedelta | None:
    """`storage.rollup_retention_days` as a pruner's age: 0 keeps the rollup forever."""
    return timedelta(days=days) if days > 0 else None
