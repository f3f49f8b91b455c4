"""Usage totals summed from the request log, and log retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.database import create_engine
from crossroads.storage.log_store import LogStore
from crossroads.storage.records import LogRecord
from crossroads.storage.retention import LogPruner
from crossroads.storage.usage_store import usage_totals
from tests.conftest import postgres_engine

DAY1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogStore]:
    engine: AsyncEngine
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
        log_store = LogStore(engine)
        await log_store.open()
        yield log_store
        await log_store.close()
    else:
        async for engine in postgres_engine("test_usage"):
            log_store = LogStore(engine)
            await log_store.open()
            yield log_store


def record(n: int, at: datetime, **fields: Any) -> LogRecord:
    base: dict[str, Any] = {
        "id": f"r{n:04d}",
        "created_at": at,
        "model_requested": "m",
        "model_served": "m",
        "status_code": 200,
        "provider": "p",
        "key_id": "k1",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cached_tokens": 2,
        "cost": 0.001,
    }
    base.update(fields)
    return LogRecord(**base)


async def test_usage_groups_sum_exactly(store: LogStore) -> None:
    records = [
        record(1, DAY1),
        record(2, DAY1, key_id="k2", provider="q", cost=0.0025),
        record(3, DAY2, model_served="other", cost=0.0000001),
        # Refused before any upstream: counted as a request and an error, never billed.
        record(4, DAY2, status_code=429, prompt_tokens=None, completion_tokens=None,
               total_tokens=None, cached_tokens=None, cost=None),
    ]  # fmt: skip
    await store.write(records)
    engine = store.engine
    by_day = await usage_totals(engine, group_by="day")
    assert [(r["day"], r["requests"], r["errors"]) for r in by_day] == [
        ("2026-03-01", 2, 0),
        ("2026-03-02", 2, 1),
    ]
    assert by_day[0]["cost"] == pytest.approx(0.0035, abs=1e-12)
    assert by_day[1]["total_tokens"] == 15
    by_key = {r["key"]: r for r in await usage_totals(engine, group_by="key")}
    assert by_key["k2"]["cost"] == pytest.approx(0.0025, abs=1e-12)
    assert by_key["k1"]["requests"] == 3
    by_model = {
        r["model"]: r["prompt_tokens"] for r in await usage_totals(engine, group_by="model")
    }
    assert by_model == {"m": 20, "other": 10}
    ranged = await usage_totals(engine, group_by="provider", start=DAY2, end=DAY2 + timedelta(1))
    assert [(r["provider"], r["requests"]) for r in ranged] == [("p", 2)]
    own = await usage_totals(engine, group_by="day", key_id="k2")
    assert [r["requests"] for r in own] == [1]
    total = sum(r["cost"] for r in by_day)
    assert total == pytest.approx(0.001 + 0.0025 + 0.0000001, abs=1e-12)


async def test_pruner_deletes_by_age_then_by_count(store: LogStore) -> None:
    now = DAY2 + timedelta(days=10)
    old = [record(i, now - timedelta(days=40, minutes=i)) for i in range(30)]
    recent = [record(100 + i, now - timedelta(minutes=i)) for i in range(50)]
    await store.write(old + recent)
    by_age = LogPruner(store.engine, max_age=timedelta(days=30), max_rows=None)
    assert await by_age.prune(now=now) == 30
    by_count = LogPruner(store.engine, max_age=None, max_rows=20)
    assert await by_count.prune(now=now) == 30
    kept = await store.query(limit=1000)
    assert len(kept) == 20
    assert {r.id for r in kept} == {f"r{100 + i:04d}" for i in range(20)}  # the newest 20
    assert await by_count.prune(now=now) == 0


async def test_a_disabled_pruner_never_starts(store: LogStore) -> None:
    pruner = LogPruner(store.engine, max_age=None, max_rows=None)
    assert not pruner.enabled
    pruner.start()
    assert "log-pruner" not in {task.get_name() for task in asyncio.all_tasks()}
    await pruner.aclose()
