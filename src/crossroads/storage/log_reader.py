"""The request log read synchronously from a SQLite file, for `crossroads logs` and `usage`.

Those commands start a process per call, so their start-up time is mostly imports, and
SQLAlchemy alone took longer to import than the rest of the command. This reader runs the
server's own statements (`records_query`, `log_conditions`, `usage_query`) compiled ahead
of time into SQL text (`log_reader_sql`, made by `log_reader_compile`, checked by a test)
on the standard library's `sqlite3`, and reads their rows as `LogStore` and `usage_totals`
do; a test compares both on the same database.

It only reads a plain file URL (`sqlite:///path`, any driver) that exists and is at the
newest schema revision, and only the filters of the command line and the other plain ones
(`start`, `end`, `model`, `status`, `session_id`, `user`, `key_id`). Anything else (a new
file, one to migrate, an in-memory database, a URL with options, PostgreSQL) is left to
`LogStore`, which creates and migrates. WAL mode, which `LogStore` sets, is a property of
the file: reading needs no setting of its own.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crossroads.storage import log_reader_sql as sql
from crossroads.storage.log_terms import (
    GroupBy,
    check_limit,
    filter_text,
    sqlite_time,
    usage_row,
)
from crossroads.storage.migrate import head_revision
from crossroads.storage.records import LogRecord
from crossroads.storage.storable import readable_json

__all__ = ["SqliteLogReader", "sqlite_path"]

_SQLITE_SCHEMES = ("sqlite://", "sqlite+aiosqlite://", "sqlite+pysqlite://")
_TEXT_FILTERS = frozenset({"model", "session_id", "user", "key_id"})
_TIME_FILTERS = frozenset({"start", "end"})
# SQLAlchemy reads a SQLite NUMERIC (the usage statement's summed cost) as a Decimal kept
# to 10 places; the reader rounds alike so both give the same totals.
_NUMERIC_PLACES = 10


def sqlite_path(url: str) -> Path | None:
    """The file a plain SQLite URL names (`sqlite:///relative`, `sqlite:////absolute`),
    or None for anything this reader leaves to SQLAlchemy's parsing: another database,
    an in-memory one, a URL with a query string or escapes."""
    scheme = next((s for s in _SQLITE_SCHEMES if url.startswith(s)), None)
    if scheme is None or "?" in url or "%" in url:
        return None
    rest = url[len(scheme) :]
    if not rest.startswith("/"):
        return None  # a host part: not a form SQLite URLs take
    database = rest[1:]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


class SqliteLogReader:
    """The request log of one SQLite file, read with blocking calls. Owns its connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @classmethod
    def open(cls, url: str) -> SqliteLogReader | None:
        """A reader for `url`, or None when it does not name an existing SQLite file at
        the newest revision (then `LogStore` must create or migrate it first)."""
        path = sqlite_path(url)
        head = head_revision()
        if path is None or head is None or not path.is_file():
            return None
        connection = sqlite3.connect(path)
        try:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.DatabaseError:
            rows = []  # not a database this reader can read: `LogStore` says why
        if rows != [(head,)]:
            connection.close()
            return None
        return cls(connection)

    def query(self, *, limit: int = 100, **filters: Any) -> list[LogRecord]:
        """What `LogStore.query` returns for the same arguments."""
        check_limit(limit)
        conditions, parameters = _conditions(filters)
        parameters["limit"] = limit
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        statement = f"{sql.RECORDS_HEAD}{where} {sql.RECORDS_TAIL}"
        rows = self._connection.execute(statement, parameters).fetchall()
        return [_record(row) for row in rows]

    def usage(
        self, *, group_by: GroupBy, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """What `usage_totals` returns for the same arguments."""
        head, tail = sql.USAGE[group_by]
        conditions, parameters = _conditions({"start": start, "end": end})
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cursor = self._connection.execute(f"{head}{where} {tail}", parameters)
        names = [column[0] for column in cursor.description]
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            row["cost"] = round(float(row["cost"]), _NUMERIC_PLACES)
            rows.append(usage_row(row, group_by))
        return rows

    def close(self) -> None:
        self._connection.close()


def _conditions(filters: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The compiled conditions for `filters` and their parameters, as `log_conditions`
    binds them."""
    conditions: list[str] = []
    parameters: dict[str, Any] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if name == "status" and value in ("ok", "error"):
            conditions.append(sql.CONDITIONS[f"status={value}"])
            continue
        if name == "status" and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"status must be an int, 'ok' or 'error', got {value!r}")
        if name not in sql.CONDITIONS:
            raise TypeError(f"the SQLite log reader does not filter on {name!r}")
        conditions.append(sql.CONDITIONS[name])
        if name in _TIME_FILTERS:
            parameters[name] = sqlite_time(value)
        elif name in _TEXT_FILTERS:
            parameters[name] = filter_text(name, value)
        else:
            parameters[name] = value
    return conditions, parameters


def _record(row: tuple[Any, ...]) -> LogRecord:
    """A row of the records statement as the record that was written (see `to_record`)."""
    fields: dict[str, Any] = {}
    for (name, kind), value in zip(sql.RECORD_COLUMNS, row, strict=True):
        if value is None or kind == "value":
            fields[name] = value
        elif kind == "time":
            fields[name] = datetime.fromisoformat(value).replace(tzinfo=UTC)
        elif kind == "json":
            fields[name] = readable_json(value)
        else:  # "bool"
            fields[name] = bool(value)
    return LogRecord(**fields)
