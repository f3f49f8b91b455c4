"""The hourly rollup behind the dashboard: the log writer's hook and the migration's backfill
sum the same records to the same rows (SQLite and PostgreSQL), and percentiles come out of
the histograms where they should."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.dashboard_store import (
    DashboardStore,
    Rollups,
    hour_of,
    percentile,
    rollup_rows,
)
from crossroads.storage.database import create_engine
from crossroads.storage.log_store import LogStore
from crossroads.storage.migrate import alembic_config
from crossroads.storage.records import LogRecord, new_log_id
from crossroads.storage.retention import LogPruner, rollup_max_age
from crossroads.storage.schema import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    ROLLUP_GRAINS,
    request_rollup,
)
from crossroads.storage.storable import indexed_text
from crossroads.storage.writer import LogWriter
from tests.conftest import postgres_engine

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
        yield sqlite
        await sqlite.dispose()
    else:
        async for pg in postgres_engine("test_dashboard"):
            yield pg


def _records(count: int, seed: int = 7) -> list[LogRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        status = rng.choice([200, 200, 200, 200, 429, 500, 400])
        asked = rng.choice(["fixed", "router", "echo"])
        records.append(
            LogRecord(
                id=new_log_id(),
                created_at=T0 + timedelta(minutes=7 * i + rng.random()),
                model_requested=asked,
                status_code=status,
                key_id=rng.choice(["main", "other", None]),
                model_served=None if status >= 400 else rng.choice(["small", "large"]),
                provider=rng.choice(["fake", None]),
                prompt_tokens=rng.randint(1, 500),
                completion_tokens=rng.randint(1, 500),
                cost=rng.random() / 100,
                latency_ms=rng.choice([None, rng.uniform(1, 30_000)]),
                ttft_ms=rng.choice([None, rng.uniform(1, 3_000)]),
            )
        )
    return records


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


async def _rollup(engine: AsyncEngine) -> dict[tuple[object, ...], dict[str, object]]:
    columns = [c for c in request_rollup.c if c.name not in ("cost", "latency_sum", "ttft_sum")]
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(request_rollup))).mappings().all()
    out: dict[tuple[object, ...], dict[str, object]] = {}
    for row in rows:
        key = (row["grain"], row["key_id"], row["hour"], row["model"], row["provider"])
        out[key] = {c.name: row[c.name] for c in columns}
        for name in ("cost", "latency_sum", "ttft_sum"):
            out[key][name] = round(float(row[name]), 6)
    return out


async def test_backfill_equals_the_writer_hook(engine: AsyncEngine) -> None:
    records = _records(400)
    # The log as it was before the rollup existed, then the migration's backfill.
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, "0004")
    store = LogStore(engine)
    await store.write(records)
    await store.open()
    backfilled = await _rollup(engine)
    async with engine.begin() as connection:
        await connection.execute(request_rollup.delete())
    # The same records through the log writer's hook, in batches of uneven sizes.
    rollups = Rollups(engine)
    for start in range(0, len(records), 37):
        await rollups.add(records[start : start + 37])
    assert rollups.pending > 0
    await rollups.aclose()
    assert rollups.pending == 0
    hooked = await _rollup(engine)
    assert hooked == backfilled
    assert {grain for grain, *_ in hooked} == set(ROLLUP_GRAINS)
    for grain in ROLLUP_GRAINS:
        rows = [row for key, row in hooked.items() if key[0] == grain]
        assert sum(int(str(row["requests"])) for row in rows) == 400
    await store.close()


async def test_writer_hook_keeps_totals_equal_to_the_log(engine: AsyncEngine) -> None:
    store = LogStore(engine)
    await store.open()
    rollups = Rollups(engine, interval=0.01)
    writer = LogWriter(store, on_written=rollups.add, max_batch=40)
    records = _records(250, seed=3)
    for record in records:
        writer.submit(record)
    await writer.flush()
    for _ in range(3000):  # the timer writes the sums soon after (30 s at most here)
        if not rollups.pending:
            break
        await asyncio.sleep(0.01)
    assert rollups.pending == 0
    dashboard = DashboardStore(engine)
    end = T0 + timedelta(days=3)
    (total,) = await dashboard.totals(T0, end, by=None)
    assert total.requests == 250
    assert total.errors == sum(r.status_code >= 400 for r in records)
    assert total.routed == sum(r.model_requested == "router" for r in records)
    assert total.cost == pytest.approx(sum(r.cost or 0 for r in records))
    assert sum(total.latency) == sum(r.latency_ms is not None for r in records)
    own = await dashboard.totals(T0, end, by=None, key_id="main")
    assert own[0].requests == sum(r.key_id == "main" for r in records)
    by_key = {t.name: t.requests for t in await dashboard.totals(T0, end, by="key")}
    assert by_key == {
        k or "": sum((r.key_id or "") == (k or "") for r in records) for k in ("main", "other", "")
    }
    hours = await dashboard.hourly(T0, end, by=None)
    assert sum(p.totals.requests for p in hours) == 250
    assert all(p.hour.minute == 0 and p.hour.tzinfo is not None for p in hours)
    # A range that starts mid-hour counts that whole hour (hour granularity, documented).
    later = await dashboard.totals(T0 + timedelta(minutes=30), end, by=None)
    assert later[0].requests == 250
    await store.close()


def test_percentiles_from_the_histogram() -> None:
    assert percentile([0] * LATENCY_BUCKETS, 0.5) is None
    values = [10.0] * 50 + [150.0] * 45 + [900.0] * 5
    rows = rollup_rows(
        LogRecord(id=str(i), created_at=T0, model_requested="m", status_code=200, latency_ms=v)
        for i, v in enumerate(values)
    )
    row = next(row for row in rows if row["grain"] == "all")
    counts = [row[f"l{i}"] for i in range(LATENCY_BUCKETS)]
    p50 = percentile(counts, 0.5)
    p95 = percentile(counts, 0.95)
    assert p50 is not None
    assert p95 is not None
    assert 0 < p50 <= 25  # the 50th value is 10 ms, in the first bucket
    assert 100 < p95 <= 200  # the 95th is 150 ms
    assert percentile(counts, 0.99) == pytest.approx(750 + 250 * 0.8)  # inside 750–1000
    slow = [0] * LATENCY_BUCKETS
    slow[-1] = 3
    assert percentile(slow, 0.5) == LATENCY_BOUNDS_MS[-1]


def test_rollup_skips_values_the_log_would_not_store() -> None:
    record = LogRecord(
        id="x",
        created_at=T0,
        model_requested="m",
        status_code=200,
        cost=float("nan"),
        latency_ms=float("inf"),
        prompt_tokens=2**40,
    )
    rows = rollup_rows([record])
    assert len(rows) == len(ROLLUP_GRAINS)
    row = rows[0]
    assert row["cost"] == 0.0
    assert row["latency_sum"] == 0.0
    assert row["prompt_tokens"] == 0
    assert row["requests"] == 1


async def test_a_model_name_with_a_nul_is_summed_as_the_log_stores_it(engine: AsyncEngine) -> None:
    # PostgreSQL refuses a NUL in text: the rollup once failed for its whole batch.
    store = LogStore(engine)
    await store.open()
    rollups = Rollups(engine)
    writer = LogWriter(store, on_written=rollups.add)
    hostile = "{{7*7}}\x00\x01" + "m" * 600
    for model in (hostile, "plain"):
        record = _records(1)[0]
        record.model_requested, record.model_served, record.status_code = model, None, 400
        writer.submit(record)
    await writer.flush()
    await rollups.aclose()
    by_model = {
        t.name: t.requests
        for t in await DashboardStore(engine).totals(T0, T0 + timedelta(days=1), by="model")
    }
    assert by_model == {indexed_text(hostile): 1, "plain": 1}
    await store.close()


async def test_sums_survive_a_failed_write(engine: AsyncEngine) -> None:
    rollups = Rollups(engine, interval=3600)
    records = _records(30)
    await rollups.add(records)
    with pytest.raises(sa.exc.DBAPIError):
        await rollups.flush()  # no table yet: the schema was never migrated
    assert rollups.pending > 0
    await LogStore(engine).open()
    await rollups.aclose()
    assert rollups.pending == 0
    (total,) = await DashboardStore(engine).totals(T0, T0 + timedelta(days=1), by=None)
    assert total.requests == 30


async def test_a_failing_hook_never_stops_the_log(engine: AsyncEngine) -> None:
    store = LogStore(engine)
    await store.open()
    calls: list[int] = []

    async def broken(batch: object) -> None:
        calls.append(len(batch))  # type: ignore[arg-type]
        raise RuntimeError("rollup down")

    writer = LogWriter(store, on_written=broken, max_batch=10)
    for record in _records(25):
        writer.submit(record)
    await writer.flush()
    assert writer.written == 25
    assert writer.pending == 0
    assert sum(calls) == 25
    assert len(await store.query(limit=100)) == 25
    await store.close()


async def _requests(engine: AsyncEngine) -> int:
    totals = await DashboardStore(engine).totals(T0, T0 + timedelta(days=30), by=None)
    return sum(t.requests for t in totals)


async def test_only_records_the_database_stored_are_summed(engine: AsyncEngine) -> None:
    store = LogStore(engine)
    await store.open()
    rollups = Rollups(engine)
    writer = LogWriter(store, on_written=rollups.add)
    first, duplicate, refused, kept = _records(4)
    writer.submit(first)
    await writer.flush()
    duplicate.id = first.id  # the primary key refuses it, even stripped: not stored
    refused.model_requested = None  # type: ignore[assignment]  # refused as is, stored stripped
    for record in (duplicate, refused, kept):
        writer.submit(record)
    await writer.flush()
    await rollups.aclose()
    assert (writer.rejected, writer.stripped) == (1, 1)
    assert len(await store.query(limit=100)) == 3
    assert await _requests(engine) == 3
    await store.close()


class _FailsMidway(LogStore):
    """A log store whose database goes away after `writes` more writes, for one write."""

    def __init__(self, engine: AsyncEngine, writes: int) -> None:
        super().__init__(engine)
        self.writes = writes

    async def write(self, records: Sequence[LogRecord]) -> None:
        self.writes -= 1
        if self.writes == -1:
            raise OSError("connection lost")
        await super().write(records)


async def test_a_batch_failing_partway_through_its_retry_sums_what_it_stored(
    engine: AsyncEngine,
) -> None:
    # The batch is refused (one record has no model), then written one by one: the first
    # two are stored (the second stripped), the database goes away at the third, and the
    # rest is requeued.
    store = _FailsMidway(engine, writes=4)
    await store.open()
    rollups = Rollups(engine)
    writer = LogWriter(store, on_written=rollups.add)
    records = _records(5)
    records[1].model_requested = None  # type: ignore[assignment]
    for record in records:
        writer.submit(record)
    with pytest.raises(OSError, match="connection lost"):
        await writer.flush()
    assert writer.pending == 3
    await rollups.flush()
    assert await _requests(engine) == 2 == len(await store.query(limit=100))
    await writer.flush()  # the database is back: the rest is stored, and summed once
    await rollups.aclose()
    assert await _requests(engine) == 5 == len(await store.query(limit=100))
    await store.close()


async def test_rollup_retention_deletes_old_hours_and_keeps_the_log(engine: AsyncEngine) -> None:
    store = LogStore(engine)
    await store.open()
    now = T0 + timedelta(days=500)
    ages = [timedelta(days=d, minutes=10 * i) for i, d in enumerate((450, 420, 401, 3, 0))]
    records = _records(len(ages))
    for record, age in zip(records, ages, strict=True):
        record.created_at = now - age
    await store.write(records)
    rollups = Rollups(engine)
    await rollups.add(records)
    await rollups.aclose()
    # The log keeps its records (no log retention); the rollup keeps 400 days of hours.
    pruner = LogPruner(engine, max_age=None, max_rows=None, rollup_max_age=timedelta(days=400))
    assert pruner.enabled
    assert await pruner.prune(now=now) == 0
    deleted = await pruner.prune_rollup(now=now)
    assert deleted == len(ROLLUP_GRAINS) * 3  # one row per grain for each old hour
    async with engine.connect() as connection:
        hours = (await connection.execute(sa.select(request_rollup.c.hour).distinct())).scalars()
        kept = sorted(hours)
    assert kept == sorted({hour_of(r.created_at) for r in records[3:]})
    assert await pruner.prune_rollup(now=now) == 0
    assert len(await store.query(limit=100)) == 5
    forever = LogPruner(engine, max_age=None, max_rows=None, rollup_max_age=rollup_max_age(0))
    assert not forever.enabled
    assert await forever.prune_rollup(now=now + timedelta(days=9999)) == 0
    await store.close()
