"""Reading and writing the request log: the one owner of its SQL.

Everything else in the gateway deals in `LogRecord`s; this module turns them into rows
and back (every field round-trips exactly, timestamps as aware UTC) and holds the few
queries the API and CLI need, written once for both SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from crossroads.storage.database import configure_sqlite, sqlite_file
from crossroads.storage.log_terms import (
    StatusFilter,
    check_filter_key,
    check_limit,
    filter_text,
    sqlite_time,
)
from crossroads.storage.migrate import upgrade
from crossroads.storage.records import LogRecord
from crossroads.storage.schema import request_log
from crossroads.storage.storable import (
    MAX_INDEXED_TEXT,
    indexed_text,
    readable_json,
    storable_json,
    storable_text,
)

if TYPE_CHECKING:  # the synchronous reader (`log_reader`) imports this module without it
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "LogStore",
    "log_conditions",
    "records_query",
    "to_record",
]

_log = logging.getLogger("crossroads.storage")

_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LogRecord))
_COLUMNS: tuple[sa.Column[Any], ...] = tuple(request_log.c[name] for name in _FIELDS)

# How each column's values are made storable (see `storable`), by position in `_FIELDS`.
_TEXT_INDEXES = tuple(i for i, c in enumerate(_COLUMNS) if isinstance(c.type, sa.Text))
# Text columns in an index (see `indexed_text`): longer values are cut, not refused.
_INDEXED_TEXT = tuple(
    i
    for i, c in enumerate(_COLUMNS)
    if isinstance(c.type, sa.Text) and any(c.name in index.columns for index in request_log.indexes)
)
_JSON_INDEXES = tuple(i for i, c in enumerate(_COLUMNS) if isinstance(c.type, sa.JSON))
# The numbers each numeric column holds, alike on both backends: Integer columns are 32-bit
# on PostgreSQL (BigInteger ones 64-bit, both 64-bit on SQLite), and floats must be finite
# (SQLite stores NaN as NULL; PostgreSQL keeps it, and JSON has no way to show it) and at
# most 1e15 in size (USD, milliseconds), so that sums over any number of rows stay finite:
# PostgreSQL refuses a sum that overflows.
_MAX_FLOAT = 1e15
_NUMBER_BOUNDS = tuple(
    (i, -bound - 1, bound)
    for i, c in enumerate(_COLUMNS)
    if isinstance(c.type, sa.Integer)
    for bound in [2**63 - 1 if isinstance(c.type, sa.BigInteger) else 2**31 - 1]
) + tuple(
    (i, -_MAX_FLOAT, _MAX_FLOAT) for i, c in enumerate(_COLUMNS) if isinstance(c.type, sa.Float)
)
_CREATED_AT = _FIELDS.index("created_at")
# Rows converted between two turns of the event loop: a full batch converted at once held
# up every request in flight for several milliseconds, a tail-latency spike per flush.
_ROWS_PER_STEP = 50


def _storable_values(record: LogRecord) -> tuple[list[Any], list[str]]:
    """The record's column values as both backends store them alike, and what was changed.

    NULs in text become U+FFFD, JSON columns are JSON text (a note in place of a value
    that cannot be stored), and a number no column can hold (a token count beyond 32 bits,
    a cost that is not finite) is left out.
    """
    values = [getattr(record, name) for name in _FIELDS]
    repairs: list[str] = []
    for i in _TEXT_INDEXES:
        value = values[i]
        if value is not None and ("\x00" in value or not value.isascii()):
            values[i] = storable_text(value)
    for i in _INDEXED_TEXT:
        value = values[i]
        if value is not None and len(value) > MAX_INDEXED_TEXT:
            values[i] = indexed_text(value)
            repairs.append(f"{_FIELDS[i]} beyond {MAX_INDEXED_TEXT} characters")
    for i in _JSON_INDEXES:
        if values[i] is not None:
            values[i], problem = storable_json(values[i])
            if problem is not None:
                repairs.append(f"{_FIELDS[i]} ({problem})")
    for i, low, high in _NUMBER_BOUNDS:
        value = values[i]
        if value is not None and not low <= value <= high:
            values[i] = None
            repairs.append(f"{_FIELDS[i]} (out of range)")
    return values, repairs


def _sqlite_row(values: list[Any]) -> tuple[Any, ...]:
    """A row for the stdlib driver: timestamps as naive-UTC text in SQLAlchemy's format."""
    values[_CREATED_AT] = sqlite_time(values[_CREATED_AT])
    return tuple(values)


# Both backends take JSON columns as the text `storable_json` made, so a value is encoded
# once and stored the same way; PostgreSQL casts the text to `json`.
_QUOTED = ", ".join('"' + name + '"' for name in _FIELDS)
_SQLITE_INSERT = f"INSERT INTO request_log ({_QUOTED}) VALUES ({', '.join('?' * len(_FIELDS))})"
_BIND_NAMES = tuple(f"v_{name}" for name in _FIELDS)
_INSERT = request_log.insert().values(
    {
        name: sa.cast(sa.bindparam(bind, type_=sa.Text()), column.type)
        if isinstance(column.type, sa.JSON)
        else sa.bindparam(bind, type_=column.type)
        for name, bind, column in zip(_FIELDS, _BIND_NAMES, _COLUMNS, strict=True)
    }
)


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


# Read back: JSON columns come as the stored text and are decoded here (`readable_json`),
# so no stored value, however odd, can fail a whole page in the driver.
_SELECTED = tuple(
    sa.cast(column, sa.Text()).label(column.name) if isinstance(column.type, sa.JSON) else column
    for column in _COLUMNS
)
_JSON_FIELDS = frozenset(_FIELDS[i] for i in _JSON_INDEXES)


def to_record(row: RowMapping) -> LogRecord:
    """A row of `records_query` as the record that was written."""
    return LogRecord(
        **{
            name: readable_json(row[name]) if name in _JSON_FIELDS else row[name]
            for name in _FIELDS
        }
    )


def _json_document(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """`column` as a JSON document the database's JSON functions never refuse.

    On SQLite, text that is not valid JSON is NULL; on PostgreSQL, `\\u0000` (which rows
    written before NULs were replaced may hold, and which fails every `json` operator) reads
    as U+FFFD, as it is stored now.
    """
    if dialect == "sqlite":
        return sa.case((sa.func.json_valid(column) == 1, column), else_=sa.null())
    from sqlalchemy.dialects import postgresql  # loaded with a PostgreSQL engine anyway

    fixed = sa.func.replace(
        sa.cast(column, sa.Text()), sa.literal("\\u0000"), sa.literal("\\ufffd")
    )
    return sa.cast(fixed, postgresql.JSON())


def _json_text(dialect: str, column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[str]:
    """SQL for "the value at top-level `key` of JSON `column`, as text"."""
    check_filter_key(key)
    document = _json_document(dialect, column)
    if dialect == "sqlite":
        extracted = sa.func.json_extract(document, sa.literal(f'$."{key}"', sa.Text()))
        return sa.cast(extracted, sa.Text())
    if dialect == "postgresql":
        return document.op("->>", return_type=sa.Text())(sa.literal(key, sa.Text()))
    raise NotImplementedError(f"JSON filters are not implemented for {dialect}")


def _has_tag(dialect: str, column: sa.ColumnElement[Any], tag: str) -> sa.ColumnElement[bool]:
    """SQL for "JSON array `column` holds the string `tag`" (false for anything else)."""
    document = _json_document(dialect, column)
    if dialect == "sqlite":
        array = sa.case((sa.func.json_type(document) == "array", document), else_=sa.null())
        elements = sa.func.json_each(array).table_valued("value")
    elif dialect == "postgresql":
        array = sa.case((sa.func.json_typeof(document) == "array", document), else_=sa.null())
        elements = sa.func.json_array_elements_text(array).table_valued("value")
    else:
        raise NotImplementedError(f"tag filters are not implemented for {dialect}")
    return sa.exists().where(elements.c.value == sa.literal(tag, sa.Text()))


def log_conditions(
    dialect: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model: str | None = None,
    status: StatusFilter | None = None,
    session_id: str | None = None,
    user: str | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
    key_id: str | None = None,
    before: str | None = None,
) -> list[sa.ColumnElement[bool]]:
    """SQL conditions for `LogStore.query`'s filters, for anything else that selects
    records by them (bulk edits, dataset rows from the log)."""
    c = request_log.c
    conditions: list[sa.ColumnElement[bool]] = []
    if start is not None:
        conditions.append(c.created_at >= start)
    if end is not None:
        conditions.append(c.created_at < end)
    if model is not None:
        conditions.append(c.model_requested == filter_text("model", model))
    if status == "ok":
        conditions.append(c.status_code < 400)
    elif status == "error":
        conditions.append(c.status_code >= 400)
    elif isinstance(status, int):
        conditions.append(c.status_code == status)
    elif status is not None:
        raise ValueError(f"status must be an int, 'ok' or 'error', got {status!r}")
    if session_id is not None:
        conditions.append(c.session_id == filter_text("session_id", session_id))
    if user is not None:
        conditions.append(c.user == filter_text("user", user))
    if key_id is not None:
        conditions.append(c.key_id == filter_text("key_id", key_id))
    for tag in tags:
        conditions.append(_has_tag(dialect, c.tags, storable_text(tag)))
    for column, pairs in ((c["metadata"], metadata), (c.extra, extra)):
        for key, value in (pairs or {}).items():
            text = _json_text(dialect, column, key)
            conditions.append(text == storable_text(value))
    if before is not None:
        before = storable_text(before)
        cursor = sa.select(c.created_at).where(c.id == before).scalar_subquery()
        conditions.append(
            sa.or_(c.created_at < cursor, sa.and_(c.created_at == cursor, c.id < before))
        )
    return conditions


def records_query(dialect: str, limit: int, **filters: Any) -> sa.Select[Any]:
    """The statement `LogStore.query` runs: the newest `limit` records matching `filters`
    (see `log_conditions`); its rows become records with `to_record`. The command line's
    reader runs it too, compiled ahead of time (`log_reader_compile`)."""
    return (
        sa.select(*_SELECTED)
        .where(*log_conditions(dialect, **filters))
        .order_by(request_log.c.created_at.desc(), request_log.c.id.desc())
        .limit(limit)
    )


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
        """Insert `records` in one transaction (a single executemany insert).

        Values no column can hold are replaced first (see `_storable_values`), each such
        record logged once, so the database refuses a record only for reasons of its own.
        """
        if not records:
            return
        sqlite = self._engine.dialect.name == "sqlite"
        rows: list[Any] = []
        for start in range(0, len(records), _ROWS_PER_STEP):
            if start:
                await asyncio.sleep(0)  # let requests in between: converting is CPU work
            for record in records[start : start + _ROWS_PER_STEP]:
                values, repairs = _storable_values(record)
                if repairs:
                    _log.warning(
                        "request log: record %s stored without %s", record.id, ", ".join(repairs)
                    )
                rows.append(
                    _sqlite_row(values) if sqlite else dict(zip(_BIND_NAMES, values, strict=True))
                )
        if self._inserts is not None:
            await self._inserts.insert(rows)
            return
        async with self._engine.begin() as connection:
            if sqlite:
                await connection.exec_driver_sql(_SQLITE_INSERT, rows)
            else:
                await connection.execute(_INSERT, rows)

    async def get(self, id: str) -> LogRecord | None:
        statement = sa.select(*_SELECTED).where(request_log.c.id == storable_text(id))
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).mappings().first()
        return None if row is None else to_record(row)

    async def query(self, *, limit: int = 100, **filters: Any) -> list[LogRecord]:
        """Records newest first, by (`created_at`, `id`), matching every filter given.

        `start` is inclusive and `end` exclusive (naive datetimes are UTC); `model` matches
        the requested model; `status` is an exact code, or "ok" (< 400) or "error" (>= 400);
        `user` and `session_id` match exactly; every tag in `tags` must be among the
        record's; every `metadata` (and `extra`) key must hold exactly the given string;
        `key_id` limits the records to one caller's. `before` is the id of the last record
        of the previous page; an id that does not exist gives an empty page. Text compares
        as stored: a NUL in a filter matches the U+FFFD that replaced it.
        """
        check_limit(limit)
        return await self._select(limit, **filters)

    async def page(self, *, limit: int = 100, **filters: Any) -> tuple[list[LogRecord], bool]:
        """`query`'s first `limit` records, and whether more match after them."""
        check_limit(limit)
        records = await self._select(limit + 1, **filters)
        return records[:limit], len(records) > limit

    async def _select(self, limit: int, **filters: Any) -> list[LogRecord]:
        statement = records_query(self._engine.dialect.name, limit, **filters)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [to_record(row) for row in rows]
