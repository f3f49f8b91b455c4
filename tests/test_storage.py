"""Request-log storage: schema and migrations, round-trips, queries, and the batching writer.

The store tests run on SQLite and, marked `postgres`, on the local PostgreSQL server (each
run in a fresh schema that is dropped afterwards).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.database import create_engine, default_database_url, normalise_url
from crossroads.storage.log_store import LogStore
from crossroads.storage.migrate import head_revision
from crossroads.storage.records import LogRecord, new_log_id
from crossroads.storage.schema import metadata, request_log
from crossroads.storage.writer import LogWriter
from tests.conftest import PG_URL, postgres_engine

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _record(id: str, *, at: datetime = T0, **fields: Any) -> LogRecord:
    defaults: dict[str, Any] = {"model_requested": "gpt-4o", "status_code": 200}
    return LogRecord(id=id, created_at=at, **(defaults | fields))


def _full_record() -> LogRecord:
    return LogRecord(
        id="req-full",
        created_at=T0,
        model_requested="fast",
        status_code=429,
        stream=True,
        key_id="team-a",
        model_served="fast",
        provider="openai",
        upstream_model="gpt-4o-mini-2024-07-18",
        error_code="rate_limited",
        error_message="Too many requests: ünïcödé ✓ 'quotes' \"double\"",
        request={"messages": [{"role": "user", "content": "héllo"}], "temperature": 0.7},
        response={"choices": [{"index": 0, "finish_reason": None}], "n": 1, "ok": True},
        prompt_tokens=12,
        completion_tokens=34,
        total_tokens=46,
        cached_tokens=0,
        prompt_characters=3_000_000_000,
        response_characters=123,
        cost=0.1 + 0.2,
        latency_ms=1234.5678901234,
        ttft_ms=1e-9,
        user="user-42",
        metadata={"team": "a", "env": "prod"},
        session_id="sess-1",
        extra={"retries": [1, 2], "nested": {"x": None}},
        tags=["a", "b", "ü"],
    )


async def _eventually(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {seconds}s")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'log.db'}")
        yield sqlite
        await sqlite.dispose()
    else:
        async for pg in postgres_engine("test_storage"):
            yield pg


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[LogStore]:
    log_store = LogStore(engine)
    await log_store.open()
    yield log_store
    await log_store.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[LogStore]:
    log_store = LogStore(create_engine(f"sqlite:///{tmp_path / 'log.db'}"))
    await log_store.open()
    yield log_store
    await log_store.close()


# -- schema, migrations, engines ---------------------------------------------------------


def test_schema_has_one_column_per_record_field() -> None:
    fields = [field.name for field in dataclasses.fields(LogRecord)]
    assert [column.name for column in request_log.columns] == fields


def _schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_create_what_the_schema_describes(store: LogStore) -> None:
    async with store.engine.connect() as connection:
        assert await connection.run_sync(_schema_diff) == []
        version = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert version == head_revision()
    await store.open()  # idempotent


def test_default_database_url() -> None:
    url = default_database_url()
    assert url.startswith("sqlite+aiosqlite:///")
    assert url.endswith("/crossroads.db")
    assert "crossroads" in url.removesuffix("/crossroads.db")


def test_urls_are_normalised_to_async_drivers() -> None:
    assert normalise_url(PG_URL).drivername == "postgresql+asyncpg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"


async def test_sqlite_engine_creates_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "log.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.parent.is_dir()
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(sa.text("PRAGMA synchronous")) == 1  # NORMAL
    finally:
        await engine.dispose()


# -- LogStore (SQLite and PostgreSQL) ----------------------------------------------------


async def test_round_trip_every_field(store: LogStore) -> None:
    full = _full_record()
    assert all(getattr(full, field.name) is not None for field in dataclasses.fields(full))
    bare = _record("req-bare", at=T0 + timedelta(seconds=1))
    await store.write([full, bare])
    assert await store.get("req-full") == full
    assert await store.get("req-bare") == bare
    assert await store.get("missing") is None
    got = await store.get("req-full")
    assert got is not None
    assert got.created_at.tzinfo is UTC
    assert isinstance(got.stream, bool)
    assert isinstance(got.cost, float)


async def test_datetimes_are_stored_as_utc(store: LogStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    await store.write([_record("tz", at=datetime(2025, 3, 1, 14, 0, tzinfo=plus_two))])
    got = await store.get("tz")
    assert got is not None
    assert got.created_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert got.created_at.tzinfo is UTC
    await store.write([])  # a no-op


def _ids(records: Sequence[LogRecord]) -> list[str]:
    return [record.id for record in records]


@pytest.fixture
async def filled(store: LogStore) -> LogStore:
    minute = timedelta(minutes=1)
    await store.write(
        [
            _record("r0", at=T0, model_requested="a", session_id="s1", metadata={"team": "x"}),
            _record("r1", at=T0 + minute, model_requested="b", status_code=404),
            _record("r2", at=T0 + 2 * minute, model_requested="a", status_code=500),
            _record(
                "r3",
                at=T0 + 3 * minute,
                model_requested="a",
                session_id="s1",
                metadata={"team": "x", "env": "prod", "a.b": "dotted"},
            ),
            _record("r4", at=T0 + 4 * minute, model_requested="b", metadata={"team": "y"}),
        ]
    )
    return store


async def test_query_filters(filled: LogStore) -> None:
    minute = timedelta(minutes=1)
    q = filled.query
    assert _ids(await q()) == ["r4", "r3", "r2", "r1", "r0"]
    assert _ids(await q(start=T0 + minute)) == ["r4", "r3", "r2", "r1"]
    assert _ids(await q(end=T0 + 2 * minute)) == ["r1", "r0"]
    naive_start = (T0 + 3 * minute).replace(tzinfo=None)
    assert _ids(await q(start=naive_start)) == ["r4", "r3"]
    assert _ids(await q(start=T0 + minute, end=T0 + 3 * minute)) == ["r2", "r1"]
    assert _ids(await q(model="a")) == ["r3", "r2", "r0"]
    assert _ids(await q(model="missing")) == []
    assert _ids(await q(status=404)) == ["r1"]
    assert _ids(await q(status="ok")) == ["r4", "r3", "r0"]
    assert _ids(await q(status="error")) == ["r2", "r1"]
    assert _ids(await q(session_id="s1")) == ["r3", "r0"]
    assert _ids(await q(model="a", status="ok", session_id="s1", start=T0 + minute)) == ["r3"]
    assert _ids(await q(limit=2)) == ["r4", "r3"]


async def test_query_metadata(filled: LogStore) -> None:
    q = filled.query
    assert _ids(await q(metadata={"team": "x"})) == ["r3", "r0"]
    assert _ids(await q(metadata={"team": "x", "env": "prod"})) == ["r3"]
    assert _ids(await q(metadata={"team": "x", "env": "dev"})) == []
    assert _ids(await q(metadata={"a.b": "dotted"})) == ["r3"]
    assert _ids(await q(metadata={"team": "y"}, model="b")) == ["r4"]
    assert _ids(await q(metadata={})) == ["r4", "r3", "r2", "r1", "r0"]


async def test_query_rejects_bad_arguments(filled: LogStore) -> None:
    for limit in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            await filled.query(limit=limit)
    with pytest.raises(ValueError, match="status"):
        await filled.query(status="bad")  # type: ignore[arg-type]


async def test_pagination_with_before(store: LogStore) -> None:
    # Ties on created_at are broken by id, so paging neither skips nor repeats rows.
    records = [_record(f"p{i}", at=T0 + timedelta(seconds=i // 3)) for i in range(10)]
    await store.write(records)
    expected = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)
    pages: list[list[LogRecord]] = []
    before: str | None = None
    while page := await store.query(limit=3, before=before):
        pages.append(page)
        before = page[-1].id
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert [record for page in pages for record in page] == expected
    assert _ids(await store.query(limit=2, before="p5", model="gpt-4o")) == ["p4", "p3"]
    assert await store.query(before="no-such-id") == []


# -- LogWriter (SQLite) ------------------------------------------------------------------


async def test_writer_flushes_on_interval(sqlite_store: LogStore) -> None:
    writer = LogWriter(sqlite_store, flush_interval=0.05)
    await writer.start()
    writer.submit(_record("w1"))
    assert writer.pending == 1
    await _eventually(lambda: writer.written == 1)
    assert writer.pending == 0
    assert await sqlite_store.get("w1") == _record("w1")
    await writer.close()


async def test_writer_flushes_when_batch_is_full(sqlite_store: LogStore) -> None:
    writer = LogWriter(sqlite_store, flush_interval=60, max_batch=5)
    await writer.start()
    for i in range(4):
        writer.submit(_record(f"b{i}"))
    await asyncio.sleep(0.1)
    assert (writer.written, writer.pending) == (0, 4)
    writer.submit(_record("b4"))
    await _eventually(lambda: writer.written == 5)
    assert len(await sqlite_store.query()) == 5
    await writer.close()


async def test_writer_close_drains_everything(sqlite_store: LogStore) -> None:
    writer = LogWriter(sqlite_store, flush_interval=60, max_batch=4)
    writer.submit(_record("early"))  # before start
    await writer.start()
    for i in range(10):
        writer.submit(_record(f"c{i}", at=T0 + timedelta(seconds=i)))
    await writer.close()
    assert (writer.written, writer.pending, writer.dropped) == (11, 0, 0)
    assert len(await sqlite_store.query(limit=100)) == 11


async def test_writer_flush_writes_pending_now(sqlite_store: LogStore) -> None:
    writer = LogWriter(sqlite_store, flush_interval=60, max_batch=2)
    for i in range(5):
        writer.submit(_record(f"f{i}"))
    await writer.flush()
    assert (writer.written, writer.pending) == (5, 0)
    await writer.close()


async def test_writer_drops_oldest_beyond_max_pending(
    sqlite_store: LogStore, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(sqlite_store, flush_interval=60, max_pending=3)
    for i in range(5):
        writer.submit(_record(f"d{i}"))
    assert (writer.pending, writer.dropped) == (3, 2)
    with caplog.at_level(logging.ERROR, logger="crossroads.storage"):
        await writer.close()
    assert _ids(await sqlite_store.query()) == ["d4", "d3", "d2"]
    assert any("dropped 2" in r.getMessage() for r in caplog.records)


class FlakyStore(LogStore):
    """A store whose first `failures` writes fail as if the database were down."""

    def __init__(self, engine: AsyncEngine, failures: int) -> None:
        super().__init__(engine)
        self.failures = failures
        self.attempts = 0

    async def write(self, records: Sequence[LogRecord]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise sa_exc.OperationalError("INSERT", {}, Exception("database is locked"))
        await super().write(records)


async def test_writer_retries_after_write_failure(
    sqlite_store: LogStore, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(sqlite_store.engine, failures=2)
    writer = LogWriter(flaky, flush_interval=0.02, max_backoff=0.1)
    await writer.start()
    with caplog.at_level(logging.INFO, logger="crossroads.storage"):
        for i in range(3):
            writer.submit(_record(f"e{i}"))
        await _eventually(lambda: writer.written == 3)
    await writer.close()
    assert flaky.attempts >= 3
    assert (writer.pending, writer.dropped, writer.rejected) == (0, 0, 0)
    assert len(await sqlite_store.query()) == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(r.name == "crossroads.storage" and r.exc_info for r in errors)
    assert any("recovered" in r.getMessage() for r in caplog.records)


async def test_writer_flush_raises_and_keeps_records(sqlite_store: LogStore) -> None:
    writer = LogWriter(FlakyStore(sqlite_store.engine, failures=1), flush_interval=60)
    writer.submit(_record("k1"))
    writer.submit(_record("k2"))
    with pytest.raises(sa_exc.OperationalError):
        await writer.flush()
    assert (writer.pending, writer.written) == (2, 0)
    await writer.close()
    assert _ids(await sqlite_store.query()) == ["k2", "k1"]


async def test_writer_isolates_records_the_database_rejects(
    sqlite_store: LogStore, caplog: pytest.LogCaptureFixture
) -> None:
    await sqlite_store.write([_record("dup")])
    writer = LogWriter(sqlite_store, flush_interval=60)
    writer.submit(_record("g1"))
    writer.submit(_record("dup"))  # primary-key violation: can never be written
    writer.submit(_record("g2"))
    with caplog.at_level(logging.ERROR, logger="crossroads.storage"):
        await writer.close()
    assert (writer.written, writer.rejected, writer.pending) == (2, 1, 0)
    assert sorted(_ids(await sqlite_store.query())) == ["dup", "g1", "g2"]
    assert any("dup" in r.getMessage() for r in caplog.records)


def test_log_ids_are_unique_hex_and_sort_by_time() -> None:
    first = [new_log_id() for _ in range(5000)]  # more than one refill of the random part
    time.sleep(0.003)
    later = new_log_id()
    assert len(set(first)) == len(first)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in [*first, later])
    assert all(later > earlier for earlier in first)
    assert abs(int(later[:12], 16) - time.time_ns() // 1_000_000) < 1000  # milliseconds now


async def test_sqlite_log_writes_use_one_thread_that_close_ends(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    store = LogStore(create_engine(f"sqlite:///{tmp_path / 'log.db'}"))
    try:
        await store.open()
        for batch in range(3):
            await store.write([_record(f"t{batch}-{i}") for i in range(100)])
        writers = [
            t
            for t in set(threading.enumerate()) - before
            if t.name.startswith("crossroads-log-writer")
        ]
        assert len(writers) == 1  # every batch went through the same thread
        assert len(await store.query(limit=1000)) == 300  # committed, seen by the engine
    finally:
        await store.close()
    assert not writers[0].is_alive()
