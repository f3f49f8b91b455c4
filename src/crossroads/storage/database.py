"""Engines for the gateway's database: SQLite by default, PostgreSQL by URL.

One place decides the default location, the async driver for a bare URL, and the SQLite
settings that suit a write-heavy log (WAL, `synchronous=NORMAL`), so every caller gets an
engine configured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import platformdirs
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:  # the command line's SQLite reader never loads the async layer
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "configure_sqlite",
    "create_engine",
    "default_database_url",
    "json_text",
    "normalise_url",
    "sqlite_file",
]

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def default_database_url() -> str:
    """SQLite in the user's data directory (created when the engine is made)."""
    path = Path(platformdirs.user_data_dir("crossroads")) / "crossroads.db"
    return f"sqlite+aiosqlite:///{path.as_posix()}"


def normalise_url(url: str | URL) -> URL:
    """Parse `url`, choosing the async driver when none is named (`postgresql://`)."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry | None = None) -> None:
    """WAL with `synchronous=NORMAL`: what a write-heavy log wants, on every connection."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def json_text(value: Any) -> str:
    """JSON columns' serialiser: orjson, several times faster than the standard library's.

    Logged bodies were parsed by orjson, so they serialise back; anything it refuses (an
    integer beyond 64 bits, a non-string key) falls back to the standard library.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`; extra keyword arguments go to `create_async_engine`.

    For a SQLite file the parent directory is created and every connection is switched
    to WAL with `synchronous=NORMAL`. `postgresql://` means asyncpg.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("json_serializer", json_text)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", configure_sqlite)
    return engine
