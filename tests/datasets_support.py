"""What the data-loop tests share: a served gateway on SQLite or on a fresh PostgreSQL
database, and small HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from crossroads.config import Config
from crossroads.storage.database import create_engine
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, PG_URL, gateway_config, running_gateway

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _admin(statement: str) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5})
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await admin.dispose()


@contextlib.contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    """A SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'log.db'}"
        return
    name = f"test_ds_{uuid.uuid4().hex}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, sa_exc.DBAPIError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable (set CI to make this fail)")
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def on_database(config: Config, url: str) -> Config:
    storage = config.storage.model_copy(update={"database_url": url})
    return config.model_copy(update={"storage": storage})


@contextlib.contextmanager
def served_gateway(backend: str, fake: FakeOpenAI, directory: Path) -> Iterator[ServedApp]:
    with database_url(backend, directory) as url:
        config = on_database(gateway_config(fake, directory / "unused.db"), url)
        with running_gateway(config) as served:
            yield served


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(served: ServedApp, key: str = API_KEY, tags: list[str] | None = None, **body: Any) -> str:
    """A chat request that must succeed; its log id. `tags` go in `x-crossroads-tags`."""
    payload = {"model": "echo", "messages": [{"role": "user", "content": "hello"}], **body}
    response = httpx.post(
        f"{served.url}/v1/chat/completions",
        content=orjson.dumps(payload),
        headers={
            **auth(key),
            "Content-Type": "application/json",
            **({"x-crossroads-tags": ",".join(tags)} if tags else {}),
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    log_id: str = response.headers["x-crossroads-log-id"]
    return log_id


def call(served: ServedApp, method: str, path: str, key: str = API_KEY, **kwargs: Any) -> Any:
    headers = {**auth(key), **kwargs.pop("headers", {})}
    return httpx.request(method, f"{served.url}{path}", headers=headers, timeout=60, **kwargs)
