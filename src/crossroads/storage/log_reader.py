"""The request log read synchronously from a SQLite file, for `crossroads logs` and `usage`.

Those commands open the database on every call, so their start-up time is mostly imports.
The async layer (`sqlalchemy.ext.asyncio`, which loads the ORM, and aiosqlite) costs more
than the query; this reader runs the very statements `LogStore.query` and `usage_totals`
run (`records_query`, `usage_query`) on a synchronous engine over the standard library's
`sqlite3`, and turns their rows into the same records and totals.

It only reads a file that exists and is at the newest schema revision: anything else (a
new file, one to migrate, an in-memory database, PostgreSQL) is left to `LogStore`, which
creates and migrates. WAL mode, which `LogStore` sets, is a property of the file: reading
needs no setting of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError

from crossroads.storage.database import normalise_url, sqlite_file
from crossroads.storage.log_store import check_limit, records_query, to_record
from crossroads.storage.migrate import at_head
from crossroads.storage.records import LogRecord
from crossroads.storage.usage_store import GroupBy, usage_query, usage_row

__all__ = ["SqliteLogReader"]


class SqliteLogReader:
    """The request log of one SQLite file, read with blocking calls. Owns its engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str | URL) -> SqliteLogReader | None:
        """A reader for `url`, or None when it does not name an existing SQLite file at
        the newest revision (then `LogStore` must create or migrate it first)."""
        parsed = normalise_url(url)
        if parsed.get_backend_name() != "sqlite":
            return None
        path = sqlite_file(parsed)
        if path is None or not path.is_file():
            return None
        engine = sa.create_engine(parsed.set(drivername="sqlite+pysqlite"))
        try:
            with engine.connect() as connection:
                if at_head(connection):
                    return cls(engine)
        except DBAPIError:
            pass  # not a database this reader can read: `LogStore` says why
        engine.dispose()
        return None

    def query(self, *, limit: int = 100, **filters: Any) -> list[LogRecord]:
        """What `LogStore.query` returns for the same arguments."""
        check_limit(limit)
        statement = records_query(self._engine.dialect.name, limit, **filters)
        with self._engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [to_record(row) for row in rows]

    def usage(
        self, *, group_by: GroupBy, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """What `usage_totals` returns for the same arguments."""
        statement = usage_query(self._engine.dialect.name, group_by=group_by, start=start, end=end)
        with self._engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [usage_row(row, group_by) for row in rows]

    def close(self) -> None:
        self._engine.dispose()
