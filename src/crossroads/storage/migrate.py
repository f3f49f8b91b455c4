"""Bring a database up to the newest schema with the packaged Alembic migrations.

The Alembic configuration is built in code, so an installed gateway needs no
`alembic.ini`; the migrations run on a connection taken from the application's own async
engine, inside one transaction.

A database already at the newest revision is recognised with one query, without loading
Alembic (a third of a second of imports): the command-line readers (`crossroads logs`,
`usage`) open the database on every call and must start quickly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `head_revision` is read without SQLAlchemy by the command line
    from alembic.config import Config
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "at_head", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Serialises concurrent upgrades (several gateway processes starting at once) on
# PostgreSQL; an arbitrary constant that other advisory-lock users are unlikely to pick.
_PG_MIGRATION_LOCK = 0x63726F7373
# Migration files are `NNNN_name.py` with `revision = "NNNN"`, each revising the one before.
_VERSION_FILE = re.compile(r"(\d{4})_\w+\.py")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` for the packaged migrations, optionally bound to `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest packaged revision, from the file names; None when a file does not follow
    the naming (then only Alembic can tell)."""
    names = [p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py")]
    numbers = [m.group(1) for name in names if (m := _VERSION_FILE.fullmatch(name))]
    if not numbers or len(numbers) != len(names):
        return None
    return max(numbers)


def _current_revision(connection: Connection) -> str | None:
    """The database's revision, or None when it has none (new, or not migrated yet)."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def at_head(connection: Connection) -> bool:
    """Whether the database is known to be at the newest revision (one query, no Alembic);
    False when it is not, or when only Alembic can tell."""
    head = head_revision()
    return head is not None and _current_revision(connection) == head


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from sqlalchemy import text

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Run `alembic upgrade head` against `engine`, in one transaction, unless the database
    is at the newest revision already."""
    if head_revision() is not None:
        async with engine.connect() as connection:
            if await connection.run_sync(at_head):
                return
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
