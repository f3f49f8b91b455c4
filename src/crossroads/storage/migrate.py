"""Bring a database up to the newest schema with the packaged Alembic migrations.

The Alembic configuration is built in code, so an installed gateway needs no
`alembic.ini`; the migrations run on a connection taken from the application's own async
engine, inside one transaction.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Serialises concurrent upgrades (several gateway processes starting at once) on
# PostgreSQL; an arbitrary constant that other advisory-lock users are unlikely to pick.
_PG_MIGRATION_LOCK = 0x63726F7373


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` for the packaged migrations, optionally bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Run `alembic upgrade head` against `engine`, in one transaction."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
