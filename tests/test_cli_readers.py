"""`crossroads logs` and `usage` read what the gateway's own queries return.

On SQLite they read through `SqliteLogReader` (the server's statements compiled ahead of
time, run on the standard library's `sqlite3`, for start-up time), on PostgreSQL through
`LogStore`: both must give the records and totals `LogStore.query` and `usage_totals` give,
and a database that is new or behind is still created or migrated.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from typer.testing import CliRunner

from crossroads.cli import app
from crossroads.cli.logs import TSV_COLUMNS
from crossroads.storage import log_reader_compile
from crossroads.storage.database import create_engine, normalise_url, sqlite_file
from crossroads.storage.log_reader import SqliteLogReader, sqlite_path
from crossroads.storage.log_store import LogStore
from crossroads.storage.log_terms import GROUPS
from crossroads.storage.migrate import alembic_config, head_revision
from crossroads.storage.records import LogRecord
from crossroads.storage.usage_store import usage_totals
from tests.conftest import PG_URL

START = datetime(2026, 3, 1, 23, 58, tzinfo=UTC)


def _records() -> list[LogRecord]:
    records = []
    for n in range(12):
        failed = n % 4 == 3
        records.append(
            LogRecord(
                id=f"{n:032x}",
                # Two records share a timestamp: the order falls back to the id.
                created_at=START + timedelta(minutes=n - (n == 5)),
                model_requested="echo" if n % 3 else "caf\u00e9",
                model_served=None if failed else "echo",
                provider=None if failed else ("up" if n % 2 else "other"),
                status_code=429 if failed else 200,
                error_code="rate_limited" if failed else None,
                key_id=f"k{n % 2}",
                # An indexed text column keeps 512 characters: a filter is cut alike.
                session_id="s1" if n < 6 else ("L" * 600 if n == 8 else None),
                user="u\x00nul" if n == 1 else None,
                prompt_tokens=None if failed else 10 + n,
                completion_tokens=None if failed else n,
                total_tokens=None if failed else 10 + 2 * n,
                cached_tokens=None if failed else n % 3,
                cost=None if failed else 0.0001 * (n + 1),
                latency_ms=12.5 * n,
                request={"messages": [{"role": "user", "content": f"hi {n}\ttab"}]},
                metadata={"team": "a" if n % 2 else "b"},
                extra={"n": n},
                tags=["x", "y"] if n % 2 else ["x"],
            )
        )
    return records


# Filters the SQLite reader serves (the command line's and the other plain ones) ...
READER_FILTERS: list[dict[str, Any]] = [
    {"limit": 100},
    {"limit": 3},
    {"limit": 100, "model": "caf\u00e9"},
    {"limit": 100, "status": "error"},
    {"limit": 100, "status": "ok", "session_id": "s1"},
    {"limit": 100, "status": 429},
    {"limit": 100, "start": START + timedelta(minutes=4), "end": START + timedelta(minutes=9)},
    {"limit": 100, "start": (START + timedelta(minutes=4)).replace(tzinfo=None)},
    {"limit": 100, "user": "u\x00nul"},
    {"limit": 100, "key_id": "k1", "model": "echo", "status": "ok"},
    {"limit": 100, "session_id": "L" * 700},
]
# ... and those only `LogStore` serves (the API's).
FILTERS: list[dict[str, Any]] = [
    *READER_FILTERS,
    {"limit": 100, "key_id": "k1", "tags": ["y"]},
    {"limit": 100, "metadata": {"team": "a"}},
    {"limit": 4, "before": f"{7:032x}"},
]
USAGE: list[dict[str, Any]] = [
    {"group_by": group, "start": None, "end": None} for group in GROUPS
] + [
    {"group_by": "day", "start": START + timedelta(minutes=3), "end": None},
    {"group_by": "model", "start": None, "end": START + timedelta(minutes=5)},
    {"group_by": "key", "start": START, "end": START + timedelta(minutes=5)},
]


async def _written(url: str) -> tuple[list[list[LogRecord]], list[list[dict[str, Any]]]]:
    """Write the records with `LogStore`; what its queries and `usage_totals` then return."""
    store = LogStore(create_engine(url))
    await store.open()
    try:
        await store.write(_records())
        expected = [await store.query(**filters) for filters in FILTERS]
        totals = [await usage_totals(store.engine, **args) for args in USAGE]
    finally:
        await store.close()
    return expected, totals


def test_the_sqlite_reader_returns_what_the_store_returns(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'log.db'}"
    expected, totals = asyncio.run(_written(url))
    assert [len(records) for records in expected] == [12, 3, 4, 3, 5, 3, 5, 8, 1, 2, 1, 6, 6, 4]
    reader = SqliteLogReader.open(url)
    assert reader is not None
    try:
        assert [reader.query(**filters) for filters in READER_FILTERS] == expected[:11]
        assert [reader.usage(**args) for args in USAGE] == totals
        with pytest.raises(ValueError, match="limit"):
            reader.query(limit=1001)
        with pytest.raises(TypeError, match="tags"):
            reader.query(tags=["y"])
        with pytest.raises(ValueError, match="status"):
            reader.query(status="teapot")
    finally:
        reader.close()


def test_the_compiled_statements_are_those_the_builders_make_now() -> None:
    """`log_reader_sql.py` is generated: a change to a statement builder must regenerate it
    (`python -m crossroads.storage.log_reader_compile`), or this fails."""
    assert log_reader_compile.TARGET.read_text() == log_reader_compile.render()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///log.db",
        "sqlite:///dir/log.db",
        "sqlite:////abs/log.db",
        "sqlite+aiosqlite:////abs/dir/log.db",
        "sqlite+pysqlite:///~/log.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+aiosqlite:///:memory:",
        "sqlite:///file:log.db",
    ],
)
def test_the_reader_finds_the_file_sqlalchemy_finds(url: str) -> None:
    assert sqlite_path(url) == sqlite_file(normalise_url(url))


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///log.db?mode=ro",
        "sqlite:///a%20b.db",
        "postgresql://postgres@127.0.0.1/x",
        "sqlite+aiosqlite://host/log.db",
        "mysql:///log.db",
    ],
)
def test_the_reader_leaves_other_urls_to_sqlalchemy(url: str) -> None:
    assert sqlite_path(url) is None


def test_the_sqlite_reader_leaves_new_and_older_databases_to_the_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert SqliteLogReader.open(f"sqlite+aiosqlite:///{missing}") is None
    assert not missing.exists()  # not created empty: `LogStore` creates and migrates it
    assert SqliteLogReader.open("sqlite+aiosqlite:///:memory:") is None
    assert SqliteLogReader.open("postgresql://postgres@127.0.0.1:5432/none") is None
    (tmp_path / "text.db").write_text("not a database\n" * 100)
    assert SqliteLogReader.open(f"sqlite:///{tmp_path / 'text.db'}") is None

    database = tmp_path / "log.db"
    asyncio.run(_written(f"sqlite:///{database}"))
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert SqliteLogReader.open(f"sqlite:///{database}") is None


def test_logs_migrates_a_database_that_is_behind(tmp_path: Path) -> None:
    """A database at an older revision is migrated by the command, then read."""
    from alembic import command

    database = tmp_path / "log.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
    engine.dispose()
    url = f"sqlite+aiosqlite:///{database}"
    assert SqliteLogReader.open(url) is None
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\ndatabase_url = "{url}"\n')
    result = CliRunner().invoke(app, ["logs", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert tuple(result.stdout.splitlines()[0].split("\t")) == TSV_COLUMNS
    with sqlite3.connect(database) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == (head_revision(),)
    reader = SqliteLogReader.open(url)
    assert reader is not None
    reader.close()


async def _create_database(name: str, *, drop: bool = False) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5})
    try:
        async with admin.connect() as connection:
            statement = (
                f'DROP DATABASE "{name}" WITH (FORCE)' if drop else f'CREATE DATABASE "{name}"'
            )
            await connection.execute(sa.text(statement))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a new, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'log.db'}"
        return
    name = f"cli_readers_{uuid.uuid4().hex}"
    try:
        asyncio.run(_create_database(name))
    except (OSError, TimeoutError, sa_exc.DBAPIError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable (set CI to make this fail)")
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_create_database(name, drop=True))


def test_logs_and_usage_print_what_the_store_returns(database_url: str, tmp_path: Path) -> None:
    expected, totals = asyncio.run(_written(database_url))
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\ndatabase_url = "{database_url}"\n')
    runner = CliRunner()

    listed = runner.invoke(app, ["logs", "--config", str(config), "--limit", "3"])
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert tuple(lines[0]) == TSV_COLUMNS
    assert [line[1] for line in lines[1:]] == [r.id for r in reversed(expected[1])]
    assert lines[1][0] == expected[1][-1].created_at.isoformat(timespec="milliseconds")

    errors = runner.invoke(app, ["logs", "--config", str(config), "--status", "error"])
    assert [line.split("\t")[1] for line in errors.stdout.splitlines()[1:]] == [
        r.id for r in reversed(expected[3])
    ]
    for args, rows in zip(USAGE, totals, strict=True):
        command = ["usage", "--config", str(config), "--json", "--group-by", args["group_by"]]
        for bound in ("start", "end"):
            if args[bound] is not None:
                command += [f"--{bound}", args[bound].isoformat()]
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == rows
