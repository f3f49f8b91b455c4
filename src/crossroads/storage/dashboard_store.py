"""The dashboard's queries, and the hourly rollup that keeps them fast.

Aggregating the request log itself took 0.5 to 0.9 s for a day's overview at a million
rows; the dashboard instead reads `request_rollup`: per UTC hour, one row per grain
(everything; per model; per provider; per key; per key and model; per key and provider,
see `schema.ROLLUP_GRAINS`), which `Rollups.add` brings up to date after each batch the
log writer stores. Each query reads the one grain it needs.
Latency and time-to-first-token percentiles come from fixed-bucket histograms summed over
those rows (interpolated inside a bucket), never from sorting raw rows. Anything that needs
single records (the log table, router decisions) goes through `LogStore`'s indexed, limited
queries instead.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.records import LogRecord
from crossroads.storage.schema import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    ROLLUP_GRAINS,
    UTCDateTime,
    feedback,
    request_log,
    request_rollup,
)
from crossroads.storage.storable import indexed_text

__all__ = [
    "Breakdown",
    "DashboardStore",
    "GroupTotals",
    "HourPoint",
    "Rollups",
    "hour_of",
    "percentile",
]

_log = logging.getLogger("crossroads.storage")

Breakdown = Literal["model", "key", "provider"]
_SUMS = (
    "requests",
    "errors_4xx",
    "errors_5xx",
    "routed",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "latency_sum",
    "ttft_sum",
)
_LATENCY = tuple(f"l{i}" for i in range(LATENCY_BUCKETS))
_TTFT = tuple(f"t{i}" for i in range(LATENCY_BUCKETS))
_ADDED = (*_SUMS, *_LATENCY, *_TTFT)
_KEYS = ("grain", "key_id", "hour", "model", "provider")
_DIMENSIONS = ("key_id", "model", "provider")


def hour_of(moment: datetime) -> datetime:
    """The UTC hour `moment` falls in (naive datetimes are UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The `q` quantile (0–1) of a latency histogram, in ms; None when it is empty.

    Linear inside the bucket the quantile falls in; the open last bucket reports its lower
    bound, so a p95 beyond 20 s reads as 20 s rather than as a guess.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i == len(LATENCY_BOUNDS_MS):
                return float(LATENCY_BOUNDS_MS[-1])
            low = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
            return float(low + (LATENCY_BOUNDS_MS[i] - low) * (rank - seen) / count)
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


def _sums() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_ADDED, 0)
    row["cost"] = row["latency_sum"] = row["ttft_sum"] = 0.0
    return row


def _finite(value: Any) -> float | None:
    if type(value) not in (int, float) or not -1e15 <= value <= 1e15:
        return None  # what the log writer would not have stored either
    return float(value)


# Sums per (hour, key_id, model, provider): what the writer's batches are added to, one
# dict update per record; the grains are derived from it only when written (`_grained`).
# Updating the six grains per record cost 34 µs a record, most of the writer's time.
Fine = dict[tuple[Any, ...], dict[str, Any]]


def rollup_rows(records: Iterable[LogRecord]) -> list[dict[str, Any]]:
    """The records summed per grain, hour and dimension: the rows `Rollups` adds."""
    fine: Fine = {}
    _accumulate(fine, records)
    return _grained(fine)


@functools.lru_cache(maxsize=4096)
def _names(key_id: str, model: str, provider: str) -> tuple[str, str, str]:
    """A rollup row's names as the log's own indexed columns hold them (no NUL, which
    PostgreSQL refuses, and at most 512 characters), so that a row names what a log filter
    matches. Cached: a few keys and models recur in every record."""
    return indexed_text(key_id), indexed_text(model), indexed_text(provider)


def _accumulate(fine: Fine, records: Iterable[LogRecord]) -> None:
    """Add `records` to `fine`, keyed by (hour, key_id, model, provider)."""
    latency_names, ttft_names, bounds = _LATENCY, _TTFT, LATENCY_BOUNDS_MS
    for record in records:
        created = record.created_at
        if created.tzinfo is UTC:
            hour = created.replace(minute=0, second=0, microsecond=0)
        else:
            hour = hour_of(created)
        key = (
            hour,
            *_names(
                record.key_id or "",
                record.model_served or record.model_requested or "",
                record.provider or "",
            ),
        )
        row = fine.get(key)
        if row is None:
            row = fine[key] = _sums()
        row["requests"] += 1
        status = record.status_code
        if type(status) is int and status >= 400:
            row["errors_4xx" if status < 500 else "errors_5xx"] += 1
        if record.model_requested == "router":
            row["routed"] += 1
        cost = record.cost
        if cost is not None and (cost := _finite(cost)) is not None:
            row["cost"] += cost
        for name in ("prompt_tokens", "completion_tokens"):
            value = getattr(record, name)
            if type(value) is int and 0 <= value < 2**31:
                row[name] += value
        latency = record.latency_ms
        if latency is not None and (latency := _finite(latency)) is not None:
            row["latency_sum"] += latency
            row[latency_names[bisect.bisect_left(bounds, latency)]] += 1
        ttft = record.ttft_ms
        if ttft is not None and (ttft := _finite(ttft)) is not None:
            row["ttft_sum"] += ttft
            row[ttft_names[bisect.bisect_left(bounds, ttft)]] += 1


def _grained(fine: Fine) -> list[dict[str, Any]]:
    """The rows of every grain, summed from the finest sums."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (hour, key_id, model, provider), sums in fine.items():
        values = {"key_id": key_id, "model": model, "provider": provider}
        for grain, split in ROLLUP_GRAINS.items():
            picked = [values[name] if name in split else "" for name in _DIMENSIONS]
            key = (grain, picked[0], hour, picked[1], picked[2])
            row = rows.get(key)
            if row is None:
                rows[key] = {**dict(zip(_KEYS, key, strict=True)), **sums}
            else:
                for name in _ADDED:
                    row[name] += sums[name]
    return list(rows.values())


def _grain(by: Breakdown | None, key_id: str | None) -> str:
    """The grain that answers "per `by`", for every key or for `key_id`'s records."""
    if by == "key" or (by is None and key_id is not None):
        return "key"
    if by is None:
        return "all"
    return f"key_{by}" if key_id is not None else by


_RECORDS_PER_STEP = 100


class Rollups:
    """Adds written log records to `request_rollup`: the log writer's `on_written` hook.

    `add` only sums the records in memory; a timer writes the sums at most every `interval`
    seconds, one upsert that adds (`ON CONFLICT … DO UPDATE SET n = n + excluded.n`), so
    any number of replicas can add to the same hour. Upserting after every batch halved the
    writer's throughput (5,500 → 2,900 records/s on SQLite, 5,700 → 2,400 on PostgreSQL);
    summed across batches, the upserts are as few as the distinct hour × key × model rows a
    few seconds of traffic touch. What is summed and not yet written is lost if the process
    dies (the log itself is not): `aclose` writes it at shutdown. Shares `engine` with its
    owner.
    """

    def __init__(self, engine: AsyncEngine, *, interval: float = 2.0) -> None:
        self._engine = engine
        self._interval = interval
        self._pending: Fine = {}
        self._in_flight = 0
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(
            request_rollup
        )
        self._upsert = insert.on_conflict_do_update(
            index_elements=list(_KEYS),
            set_={name: request_rollup.c[name] + insert.excluded[name] for name in _ADDED},
        )

    @property
    def pending(self) -> int:
        """Sums (per hour, key, model and provider) not yet written, a write under way's
        included."""
        return len(self._pending) + self._in_flight

    async def add(self, records: Sequence[LogRecord]) -> None:
        # About 4 µs a record, on the event loop: a step at a time, letting requests in
        # between, as `LogStore.write` converts rows (a 500-record batch at once would hold
        # requests in flight up for 2 ms).
        for start in range(0, len(records), _RECORDS_PER_STEP):
            if start:
                await asyncio.sleep(0)
            _accumulate(self._pending, records[start : start + _RECORDS_PER_STEP])
        if self._pending and self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(), name="crossroads-rollup")

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval)
        self._timer = None
        try:
            await self.flush()
        except Exception:
            _log.exception("rollup: writing %d rows failed; retrying", len(self._pending))
            if self._pending and self._timer is None:
                self._timer = asyncio.create_task(self._flush_later(), name="crossroads-rollup")

    async def flush(self) -> None:
        """Write every pending sum now. On failure they stay pending, and it raises."""
        async with self._lock:
            rows, self._pending = self._pending, {}
            if not rows:
                return
            self._in_flight = len(rows)
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(self._upsert, _grained(rows))
            except BaseException:
                _merge(self._pending, rows)
                raise
            finally:
                self._in_flight = 0

    async def aclose(self) -> None:
        """Stop the timer and write what is pending."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self.flush()


def _merge(
    into: dict[tuple[Any, ...], dict[str, Any]], rows: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    for key, row in rows.items():
        target = into.get(key)
        if target is None:
            into[key] = row
        else:
            for name in _ADDED:
                target[name] += row[name]


@dataclass(slots=True)
class GroupTotals:
    """One model's, key's or provider's (or everything's) sums over a time range."""

    name: str
    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    routed: int = 0
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)
    ttft: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    @property
    def errors(self) -> int:
        return self.errors_4xx + self.errors_5xx

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_ms(self, q: float) -> float | None:
        return percentile(self.latency, q)

    def ttft_ms(self, q: float) -> float | None:
        return percentile(self.ttft, q)

    def add(self, row: Any) -> None:
        for name in ("requests", "errors_4xx", "errors_5xx", "routed"):
            setattr(self, name, getattr(self, name) + int(row[name] or 0))
        self.cost += float(row["cost"] or 0.0)
        self.prompt_tokens += int(row["prompt_tokens"] or 0)
        self.completion_tokens += int(row["completion_tokens"] or 0)
        if _LATENCY[0] in row:
            for i in range(LATENCY_BUCKETS):
                self.latency[i] += int(row[_LATENCY[i]] or 0)
                self.ttft[i] += int(row[_TTFT[i]] or 0)


@dataclass(slots=True)
class HourPoint:
    """One hour of one group: what the time charts plot."""

    hour: datetime
    name: str
    totals: GroupTotals


class DashboardStore:
    """Read-only queries for the dashboard. Shares `engine` with its owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _rollup_select(
        self,
        columns: Sequence[sa.ColumnElement[Any]],
        start: datetime,
        end: datetime,
        by: Breakdown | None,
        key_id: str | None,
        *,
        histograms: bool = True,
    ) -> sa.Select[Any]:
        c = request_rollup.c
        names = _ADDED if histograms else _SUMS
        sums = [sa.func.sum(c[name]).label(name) for name in names]
        statement = sa.select(*columns, *sums).where(
            c.grain == _grain(by, key_id), c.hour >= hour_of(start), c.hour < end
        )
        if key_id is not None:
            statement = statement.where(c.key_id == key_id)
        return statement.group_by(*columns)

    async def totals(
        self, start: datetime, end: datetime, *, by: Breakdown | None, key_id: str | None = None
    ) -> list[GroupTotals]:
        """Sums per group over `[start, end)` at hour granularity, largest cost first; one
        row named "all" when `by` is None."""
        columns = [] if by is None else [request_rollup.c[_column(by)].label("name")]
        statement = self._rollup_select(columns, start, end, by, key_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        out = []
        for row in rows:
            totals = GroupTotals(name="all" if by is None else str(row["name"]))
            totals.add(row)
            out.append(totals)
        if by is None and not out:
            out.append(GroupTotals(name="all"))
        return sorted(out, key=lambda t: (-t.cost, -t.requests, t.name))

    async def hourly(
        self,
        start: datetime,
        end: datetime,
        *,
        by: Breakdown | None,
        key_id: str | None = None,
        histograms: bool = True,
        daily: bool = False,
    ) -> list[HourPoint]:
        """Sums per hour, or per UTC day with `daily` (and per group, unless `by` is None),
        over `[start, end)`; without `histograms`, the latency and TTFT counts are left at
        zero (less to read). A month per hour and per key was 14,000 rows to fetch and
        chart; per day it is 600."""
        c = request_rollup.c
        when = _day(c.hour, self._engine.dialect.name) if daily else c.hour
        columns: list[sa.ColumnElement[Any]] = [when.label("hour")]
        if by is not None:
            columns.append(c[_column(by)].label("name"))
        statement = self._rollup_select(
            columns, start, end, by, key_id, histograms=histograms
        ).order_by(sa.literal_column("hour"))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        points = []
        for row in rows:
            name = "all" if by is None else str(row["name"])
            totals = GroupTotals(name=name)
            totals.add(row)
            hour = row["hour"]
            if isinstance(hour, str):  # SQLite's text when a label hides the column type
                hour = datetime.fromisoformat(hour)
            points.append(HourPoint(hour=hour_of(hour), name=name, totals=totals))
        return points

    async def spend_since(self, key_ids: Sequence[str], since: datetime | None) -> dict[str, float]:
        """Cost per key from the hour `since` falls in (or ever, for None)."""
        if not key_ids:
            return {}
        c = request_rollup.c
        statement = (
            sa.select(c.key_id, sa.func.sum(c.cost).label("cost"))
            .where(c.grain == "key", c.key_id.in_(list(key_ids)))
            .group_by(c.key_id)
        )
        if since is not None:
            statement = statement.where(c.hour >= hour_of(since))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return {str(key): float(cost or 0.0) for key, cost in rows}

    async def recent_feedback(
        self, *, limit: int = 50, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest feedback with the model that answered, for records `key_id` made."""
        f, log = feedback.c, request_log.c
        statement = (
            sa.select(
                f.log_id,
                f.score,
                f.comment,
                f.created_at,
                sa.func.coalesce(log.model_served, log.model_requested).label("model"),
                log.model_requested,
            )
            .select_from(feedback.outerjoin(request_log, log.id == f.log_id))
            .order_by(f.created_at.desc())
            .limit(limit)
        )
        if key_id is not None:
            statement = statement.where(log.key_id == key_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [dict(row) for row in rows]


def _day(hour: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    """The UTC day an hour column's value falls in, still typed as a timestamp."""
    if dialect == "postgresql":
        day: sa.ColumnElement[Any] = sa.func.date_trunc("day", hour, "UTC")
    else:  # naive UTC text, "YYYY-MM-DD HH:00:00.000000"
        day = sa.func.substr(hour, 1, 10).concat(" 00:00:00.000000")
    return sa.type_coerce(day, UTCDateTime())


def _column(by: Breakdown) -> str:
    return {"model": "model", "key": "key_id", "provider": "provider"}[by]
