"""Alembic environment for the crossroads database.

`crossroads.storage.migrate.upgrade` runs the migrations on a connection it already holds
(passed in `config.attributes["connection"]`), so the same code path serves SQLite and
PostgreSQL and no `alembic.ini` is needed at runtime. Without a connection (developer use
of the `alembic` command), an engine is made from the `sqlalchemy.url` option, or the
default SQLite database.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from crossroads.storage.database import create_engine, default_database_url
from crossroads.storage.schema import metadata

__all__: list[str] = []


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported")
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
    else:
        url = context.config.get_main_option("sqlalchemy.url") or default_database_url()
        asyncio.run(_run_with_own_engine(url))


_main()
