"""A seeded run of mutated requests through the real gateway (SQLite and PostgreSQL): no
answer is a 5xx, and afterwards the log, key limits, circuit breakers and admin API work.

The same harness runs 20,000 bodies in `benchmarks/fuzz_bodies.py` (`make bench-fuzz`)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from crossroads.storage.database import create_engine
from crossroads.testing.fuzz.report import run_fuzz
from tests.conftest import PG_URL


def _assert_clean(bodies: int, seed: int, database_url: str | None) -> None:
    report = run_fuzz(bodies, seed, database_url=database_url)
    failures = [f.as_json() for f in report.tally.failures]
    assert report.tally.server_errors == 0, failures[:3]
    assert not failures, failures[:3]
    for check in report.checks:
        assert check.ok, f"{check.name}: {check.detail}"
    assert report.tally.sent == bodies


async def _admin(statement: str) -> None:
    engine = create_engine(
        PG_URL.rsplit("/", 1)[0] + "/postgres",
        connect_args={"timeout": 5},
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one gateway, dropped afterwards."""
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, sa_exc.DBAPIError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable (set CI to make this fail)")
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_mutated_requests_never_get_a_5xx_nor_break_shared_state_sqlite() -> None:
    _assert_clean(400, seed=11, database_url=None)


def test_mutated_requests_never_get_a_5xx_nor_break_shared_state_postgresql(
    postgres_database: str,
) -> None:
    _assert_clean(250, seed=12, database_url=postgres_database)
