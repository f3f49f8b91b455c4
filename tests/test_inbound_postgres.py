"""The request-log side of the inbound APIs on PostgreSQL: `previous_response_id` and
`GET /v1/responses/{id}` find a response at once (before the batched writer has run), for
its own key only, and Anthropic Messages are recorded with their usage."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa
from openai import OpenAI
from sqlalchemy.ext.asyncio import create_async_engine

from crossroads.config import parse_config
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, DIALECT_PRICE, OTHER_KEY, PG_URL, flush_log, running_gateway

pytestmark = pytest.mark.postgres

PG_ADMIN = PG_URL.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + "/postgres"


async def _admin(statement: str) -> None:
    engine = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def pg_gateway(fakes: dict[str, Any]) -> Iterator[ServedApp]:
    name = f"crossroads_inbound_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, sa.exc.DBAPIError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable: {error}, and CI is set")
        pytest.skip(f"PostgreSQL is unreachable: {error} (set CI to make this fail)")
    price = DIALECT_PRICE
    config = parse_config(
        {
            "storage": {
                "database_url": PG_URL.rsplit("/", 1)[0] + f"/{name}",
                "flush_interval": 5,  # long: lookups must not depend on the writer's timing
            },
            "keys": [
                {"name": "main", "key": API_KEY, "logs": "all"},
                {"name": "other", "key": OTHER_KEY},
            ],
            "providers": {
                "openai": {"base_url": fakes["openai"].base_url, "api_key": "sk-oa"},
                "anthropic": {
                    "dialect": "anthropic",
                    "base_url": fakes["anthropic"].base_url,
                    "api_key": "sk-an",
                },
            },
            "models": {
                "gpt-echo": {
                    "deployments": [{"provider": "openai", "model": "echo", "price": price}]
                },
                "claude-echo": {
                    "deployments": [{"provider": "anthropic", "model": "echo", "price": price}]
                },
            },
        }
    )
    try:
        with running_gateway(config) as served:
            yield served
    finally:
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_previous_response_and_retrieval(pg_gateway: ServedApp, fakes: dict[str, Any]) -> None:
    url = f"{pg_gateway.url}/v1"
    with OpenAI(base_url=url, api_key=API_KEY, max_retries=0) as sdk:
        first = sdk.responses.create(model="claude-echo", input="alpha")
        second = sdk.responses.create(model="gpt-echo", previous_response_id=first.id, input="beta")
        assert second.output_text == "beta"
        assert [m["content"] for m in fakes["openai"].requests[-1]["body"]["messages"]] == [
            "alpha",
            "alpha",
            "beta",
        ]
        assert sdk.responses.retrieve(second.id).output_text == "beta"
    with OpenAI(base_url=url, api_key=OTHER_KEY, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="gpt-echo", previous_response_id=first.id, input="x")
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(first.id)


def test_messages_are_logged(pg_gateway: ServedApp) -> None:
    with anthropic.Anthropic(base_url=pg_gateway.url, api_key=API_KEY, max_retries=0) as claude:
        raw = claude.messages.with_raw_response.create(
            model="gpt-echo", max_tokens=50, messages=[{"role": "user", "content": "a b c"}]
        )
    message = raw.parse()
    flush_log(pg_gateway)
    record = httpx.get(
        f"{pg_gateway.url}/v1/logs/{raw.headers['x-crossroads-log-id']}",
        headers={"authorization": f"Bearer {API_KEY}"},
    ).json()
    assert record["completion_tokens"] == message.usage.output_tokens
    assert record["provider"] == "openai"
