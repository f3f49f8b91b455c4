"""Reading and writing the request log: the one owner of its SQL.

Everything else in the gateway deals in `LogRecord`s; this module turns them into rows
and back (every field round-trips exactly, timestamps as aware UTC) and holds the few
queries the API and CLI need, written once for both SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.database import configure_sqlite, json_text, sqlite_file
from crossroads.storage.migrate import upgrade
from crossroads.storage.records import LogRecord
from crossroads.storage.schema import request_log

__all__ = ["MAX_LIMIT", "LogStore", "StatusFilter", "parse_status_filter"]

MAX_LIMIT = 1000

StatusFilter = int | Literal["ok", "error"]


def parse_status_filter(text: str | None) -> StatusFilter | None:
    """'ok', 'error' or an HTTP status code, as typed in a URL or on the command line."""
    if not text:
        return None
    if text == "ok":
        return "ok"
    if text == "error":
        return "error"
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text)
    raise ValueError(f"status must be 'ok', 'error' or an HTTP status code, got {text!r}")


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LogRecord))
_COLUMNS: tuple[sa.Column[Any], ...] = tuple(request_log.c[name] for name in _FIELDS)


def _to_row(record: LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _FIELDS}


# SQLite takes rows as plain tuples, converted here the way SQLAlchemy's types would
# (JSON text with SQL NULL for None, naive-UTC timestamps in SQLAlchemy's text format).
# Its per-row, per-column bind processing was about a sixth of a proxied request's CPU.
_QUOTED = ", ".join('"' + name + '"' for name in _FIELDS)
_SQLITE_INSERT = f"INSERT INTO request_log ({_QUOTED}) VALUES ({', '.join('?' * len(_FIELDS))})"
_JSON_INDEXES = tuple(i for i, c in enumerate(_COLUMNS) if isinstance(c.type, sa.JSON))
_CREATED_AT = _FIELDS.index("created_at")
# Rows converted between two turns of the event loop: a full batch converted at once held
# up every request in flight for several milliseconds, a tail-latency spike per flush.
_ROWS_PER_STEP = 50


def _sqlite_values(record: LogRecord) -> tuple[Any, ...]:
    values = [getattr(record, name) for name in _FIELDS]
    for i in _JSON_INDEXES:
        if values[i] is not None:
            values[i] = json_text(values[i])
    created = record.created_at
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    values[_CREATED_AT] = f"{created:%Y-%m-%d %H:%M:%S.%f}"
    return tuple(values)


class _SqliteInserts:
    """Request-log inserts into a SQLite file, on a thread and a connection of their own.

    Through the async engine, a batch cost several round trips between the event loop and
    the driver's thread (begin, insert, commit, the pool's reset). With the gateway
    saturated, those waits left the writer at about 5,000 rows/s while requests arrived at
    7,000/s: the backlog, and the memory it held, grew until records were dropped. Here a
    batch of rows is one hand-off. The rows are converted on the loop before (see
    `LogStore.write`): converting them on this thread held the interpreter for up to its
    5 ms switch interval at a time, which showed in the p99 of requests in flight.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="crossroads-log-writer")
        self._connection: sqlite3.Connection | None = None

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._insert, rows)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if self._connection is None:
            connection = sqlite3.connect(self._path, check_same_thread=False)
            configure_sqlite(connection)
            self._connection = connection
        with self._connection:  # one transaction: committed, or rolled back on error
            for start in range(0, len(rows), _ROWS_PER_STEP):
                if start:
                    # Let the event loop's thread have the core if it is waiting for it:
                    # where both share one, a 500-row insert otherwise held up a request
                    # for milliseconds (the p99 at concurrency 1 went from 1.5 to 3.5 ms).
                    os.sched_yield()
                self._connection.executemany(_SQLITE_INSERT, rows[start : start + _ROWS_PER_STEP])

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        if self._connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)


def _to_record(row: RowMapping) -> LogRecord:
    return LogRecord(**{name: row[name] for name in _FIELDS})


def _json_text(dialect: str, column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[str]:
    """SQL for "the value at top-level `key` of JSON `column`, as text"."""
    if dialect == "sqlite":
        if '"' in key:
            raise ValueError(f"metadata keys containing '\"' cannot be filtered on: {key!r}")
        extracted = sa.func.json_extract(column, sa.literal(f'$."{key}"', sa.Text()))
        return sa.cast(extracted, sa.Text())
    if dialect == "postgresql":
        return column.op("->>", return_type=sa.Text())(sa.literal(key, sa.Text()))
    raise NotImplementedError(f"metadata filters are not implemented for {dialect}")


class LogStore:
    """The request log in one database. Owns `engine`: `close()` disposes of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        path = sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
        self._inserts = _SqliteInserts(str(path)) if path is not None else None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def open(self) -> None:
        """Bring the schema up to date (runs the Alembic migrations)."""
        await upgrade(self._engine)

    async def close(self) -> None:
        if self._inserts is not None:
            await self._inserts.close()
        await self._engine.dispose()

    async def write(self, records: Sequence[LogRecord]) -> None:
        """Insert `records` in one transaction (a single executemany insert)."""
        if not records:
            return
        sqlite = self._engine.dialect.name == "sqlite"
        convert = _sqlite_values if sqlite else _to_row
        rows: list[Any] = []
        for start in range(0, len(records), _ROWS_PER_STEP):
            if start:
                await asyncio.sleep(0)  # let requests in between: converting is CPU work
            rows += [convert(record) for record in records[start : start + _ROWS_PER_STEP]]
        if self._inserts is not None:
            await self._inserts.insert(rows)
            return
        async with self._engine.begin() as connection:
            if sqlite:
                await connection.exec_driver_sql(_SQLITE_INSERT, rows)
            else:
                await connection.execute(request_log.insert(), rows)

    async def get(self, id: str) -> LogRecord | None:
        statement = sa.select(*_COLUMNS).where(request_log.c.id == id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).mappings().first()
        return None if row is None else _to_record(row)

    async def query(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        model: str | None = None,
        status: StatusFilter | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        key_id: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[LogRecord]:
        """Records newest first, by (`created_at`, `id`), matching every filter given.

        `start` is inclusive and `end` exclusive (naive datetimes are UTC); `model` matches
        the requested model; `status` is an exact code, or "ok" (< 400) or "error" (>= 400);
        every `metadata` key must hold exactly the given string; `key_id` limits the
        records to one caller's. `before` is the id of the
        last record of the previous page; an id that does not exist gives an empty page.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        dialect = self._engine.dialect.name
        c = request_log.c
        conditions: list[sa.ColumnElement[bool]] = []
        if start is not None:
            conditions.append(c.created_at >= start)
        if end is not None:
            conditions.append(c.created_at < end)
        if model is not None:
            conditions.append(c.model_requested == model)
        if status == "ok":
            conditions.append(c.status_code < 400)
        elif status == "error":
            conditions.append(c.status_code >= 400)
        elif isinstance(status, int):
            conditions.append(c.status_code == status)
        elif status is not None:
            raise ValueError(f"status must be an int, 'ok' or 'error', got {status!r}")
        if session_id is not None:
            conditions.append(c.session_id == session_id)
        if key_id is not None:
            conditions.append(c.key_id == key_id)
        for key, value in (metadata or {}).items():
            conditions.append(_json_text(dialect, c["metadata"], key) == value)
        if before is not None:
            cursor = sa.select(c.created_at).where(c.id == before).scalar_subquery()
            conditions.append(
                sa.or_(c.created_at < cursor, sa.and_(c.created_at == cursor, c.id < before))
            )
        statement = (
            sa.select(*_COLUMNS)
            .where(*conditions)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [_to_record(row) for row in rows]
