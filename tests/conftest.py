"""Shared fixtures: a fake upstream and a real gateway served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from openai import OpenAI
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.config import Config, parse_config
from crossroads.providers.llamacpp.engine import EngineSettings, LlamaEngine
from crossroads.providers.llamacpp.provider import default_model_path
from crossroads.providers.llamacpp.templates import GEMMA3
from crossroads.server import create_app
from crossroads.storage.database import create_engine
from crossroads.testing.fake_anthropic import FakeAnthropic
from crossroads.testing.fake_gemini import FakeGemini
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp, serve_in_thread

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
API_KEY = "sk-test-0123456789abcdef"
OTHER_KEY = "sk-other-0123456789abcdef"

# Public model name → fake-upstream behaviour (the deployment's upstream model id).
BEHAVIOURS = {
    "fixed": "fixed",
    "echo": "echo",
    "slow": "fixed+delay=300",
    "error-400": "error=400",
    "error-401": "error=401",
    "error-404": "error=404",
    "error-422": "error=422",
    "error-429": "error=429+retry_after=7",
    "error-500": "error=500",
    "error-502": "error=502",
    "error-503": "error=503",
    "error-504": "error=504",
    "malformed": "malformed",
    "drop": "drop_after=3",
    "cached": "cached=4",
    "no-usage": "no_usage",
    "tool": "tool",
    "slow-stream": "chunk_delay=300+chunks=10",
}

PRICE = {"input": 2.0, "output": 8.0, "cached_input": 0.5}


# Seconds one engine test may take, its fixtures' set-up included (loading the model, the
# module's gateway): minutes on a busy 2-core machine, where the default 120 s is not enough.
ENGINE_TIMEOUT = 900


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Engine tests get ENGINE_TIMEOUT unless they set their own; a test that uses the
    `engine` fixture below without the `engine` marker is refused, so `-m "not engine"`
    (`make test-fast`) never loads the model by surprise."""
    unmarked = []
    for item in items:
        marked = item.get_closest_marker("engine") is not None
        if marked and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(ENGINE_TIMEOUT))
        definitions = getattr(item, "_fixtureinfo", None)
        defs = definitions.name2fixturedefs.get("engine", ()) if definitions else ()
        if not marked and defs and defs[-1].func.__module__ == __name__:
            unmarked.append(item.nodeid)
    if unmarked:
        raise pytest.UsageError(
            "tests that drive the embedded engine need @pytest.mark.engine: " + ", ".join(unmarked)
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine() -> AsyncIterator[LlamaEngine]:
    """The default GGUF on the embedded engine, loaded once for every test that drives it."""
    settings = EngineSettings(
        model_path=default_model_path(),
        chat_template=GEMMA3,
        threads=2,
        parallel=4,
        context_size=4096,
    )
    llama = LlamaEngine(settings)
    await llama.load()
    yield llama
    await llama.aclose()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream").running_in_thread() as fake:
        yield fake


def gateway_config(fake: FakeOpenAI, database: Path, *, keys: bool = True, **server: Any) -> Config:
    data: dict[str, Any] = {
        "server": server,
        "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
        "providers": {
            "fake": {"base_url": fake.base_url, "api_key": "sk-upstream", "read_timeout": 5},
            "dead": {"base_url": "http://127.0.0.1:9", "connect_timeout": 2},
            "tight": {"base_url": fake.base_url, "api_key": "sk-upstream", "read_timeout": 0.2},
            # No key of its own: callers bring theirs in `openai_api_key`.
            "byok": {"base_url": fake.base_url},
            "mistral": {"preset": "mistral", "base_url": fake.base_url, "api_key": "sk-upstream"},
            "vllm": {"preset": "vllm", "base_url": fake.base_url, "api_key": "sk-upstream"},
            "sampler": {
                "base_url": fake.base_url,
                "api_key": "sk-upstream",
                "parameters": {"top_k": "native", "min_p": "native"},
            },
        },
        "models": {
            name: {"deployments": [{"provider": "fake", "model": behaviour, "price": PRICE}]}
            for name, behaviour in BEHAVIOURS.items()
        },
    }
    data["models"]["unreachable"] = {"deployments": [{"provider": "dead", "model": "x"}]}
    data["models"]["byok"] = {"deployments": [{"provider": "byok", "model": "fixed"}]}
    data["models"]["on-mistral"] = {"deployments": [{"provider": "mistral", "model": "echo"}]}
    data["models"]["on-vllm"] = {"deployments": [{"provider": "vllm", "model": "echo"}]}
    # Mistral first; only the second deployment honours top_k.
    data["models"]["picky"] = {
        "deployments": [
            {"provider": "mistral", "model": "echo", "price": PRICE},
            {"provider": "sampler", "model": "echo", "price": PRICE},
        ]
    }
    data["models"]["timeout"] = {
        "deployments": [{"provider": "tight", "model": "fixed+delay=1000"}]
    }
    if keys:
        data["keys"] = [
            {"name": "main", "key": API_KEY, "logs": "all"},
            {"name": "other", "key": OTHER_KEY},
        ]
    return parse_config(data)


@contextlib.contextmanager
def running_gateway(config: Config) -> Iterator[ServedApp]:
    with serve_in_thread(create_app(config)) as served:
        yield served


@pytest.fixture(scope="module")
def gateway(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("db") / "log.db"
    with running_gateway(
        gateway_config(fake_upstream, database, max_body_bytes=64 * 1024)
    ) as served:
        yield served


@pytest.fixture
def client(gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


async def postgres_engine(prefix: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose connections use a fresh schema, dropped afterwards.

    Fails when PostgreSQL is unreachable and CI is set; skips (saying why) otherwise.
    """
    admin = create_engine(PG_URL, connect_args={"timeout": 5})
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, sa_exc.DBAPIError) as error:
        await admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable (set CI to make this fail)")
    schema = f"{prefix}_{uuid.uuid4().hex}"
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(PG_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def flush_log(served: ServedApp) -> None:
    """Write everything the gateway has queued for the log, from the test's thread."""
    served.call(served.app.state.crossroads.log_writer.flush())


# --- one gateway, three wire dialects ---------------------------------------------------------

DIALECTS = ("openai", "anthropic", "gemini")
DIALECT_PRICE = {"input": 2.0, "output": 8.0, "cached_input": 0.5, "cache_write": 2.5}
ARGS = '{"city":"Paris","days":2}'
# Models `{dialect}-{suffix}` of the dialect gateway: suffix → fake behaviour (the
# deployment's upstream model id).
DIALECT_BEHAVIOURS = {
    "echo": "echo",
    "chunked": "echo+chunks=7",
    "tools": f"tools=2+args={ARGS}",
    "one-tool": f"args={ARGS}",
    "fixed": "fixed",
    "think": "think=Two_plus_two+reply=Four.",
    "error-400": "error=400",
    "error-429": "error=429+retry_after=3",
    "error-500": "error=500",
    "error-503": "error=503",
    "error-529": "error=529",
    "drop": "drop_after=2",
    "stream-error": "stream_error",
    "cached": "echo+cached=4+cache_write=2",
    "blocked": "blocked",
}


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, Any]]:
    """A fake upstream per wire dialect, keyed by dialect name."""
    with (
        FakeOpenAI(api_key="sk-oa").running_in_thread() as oa,
        FakeAnthropic(api_key="sk-an").running_in_thread() as an,
        FakeGemini(api_key="sk-ge").running_in_thread() as ge,
    ):
        yield {"openai": oa, "anthropic": an, "gemini": ge}


@pytest.fixture(scope="module")
def golden_gateway(
    fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    """A gateway with one provider per dialect and every `DIALECT_BEHAVIOURS` model on each."""
    database: Path = tmp_path_factory.mktemp("golden") / "log.db"
    providers = {
        "openai": {"base_url": fakes["openai"].base_url, "api_key": "sk-oa"},
        "anthropic": {
            "dialect": "anthropic",
            "base_url": fakes["anthropic"].base_url,
            "api_key": "sk-an",
        },
        "gemini": {"dialect": "gemini", "base_url": fakes["gemini"].base_url, "api_key": "sk-ge"},
    }
    models = {
        f"{dialect}-{name}": {
            "deployments": [{"provider": dialect, "model": behaviour, "price": DIALECT_PRICE}]
        }
        for dialect in DIALECTS
        for name, behaviour in DIALECT_BEHAVIOURS.items()
    }
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
            "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
            "providers": providers,
            "models": models,
        }
    )
    with running_gateway(config) as served:
        yield served


def interruptible() -> None:
    """A child's `preexec_fn`: SIGINT back to its default, so the Python in the child turns
    it into KeyboardInterrupt (Ctrl-C) even when the tests run with SIGINT ignored, as every
    job started with `&` from a non-interactive shell does (Python leaves an ignored SIGINT
    ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
