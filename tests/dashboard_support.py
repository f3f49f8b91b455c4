"""A served gateway with traffic of several keys, for the dashboard's HTTP and browser tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from openai import OpenAI

from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.storage.key_store import hash_secret
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY, flush_log, gateway_config, running_gateway

MASTER = "mk-dashboard-0123456789abcdef"
BYOK = "sk-byok-secret-0123456789abcdef"


@dataclass
class Traffic:
    served: ServedApp
    virtual_secret: str
    virtual_hash: str
    main_ids: list[str]
    other_ids: list[str]

    @property
    def secrets(self) -> tuple[str, ...]:
        return (API_KEY, OTHER_KEY, MASTER, BYOK, self.virtual_secret, self.virtual_hash)


def _ask(sdk: OpenAI, model: str, **extra: object) -> None:
    with contextlib.suppress(Exception):  # the error models answer with errors, logged too
        sdk.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"hello {model}"}],
            extra_body=dict(extra) or None,
        )


def _await_rollup(served: ServedApp) -> None:
    """Wait until the rollup (written on a short timer after the log) counts every record."""
    engine = served.app.state.crossroads.log_store.engine

    async def counts() -> tuple[int, int]:
        async with engine.connect() as connection:
            logged = await connection.scalar(sa.text("SELECT count(*) FROM request_log"))
            rolled = await connection.scalar(
                sa.text("SELECT coalesce(sum(requests), 0) FROM request_rollup WHERE grain = 'all'")
            )
        return int(logged or 0), int(rolled or 0)

    deadline = time.monotonic() + 20
    while (found := served.call(counts()))[0] != found[1]:
        assert time.monotonic() < deadline, f"rollup behind the log: {found}"
        time.sleep(0.02)


@contextlib.contextmanager
def dashboard_gateway(fake: FakeOpenAI, database: Path) -> Iterator[Traffic]:
    """A gateway with a master key, keys `main` (logs = "all") and `other` (own), a virtual
    key, and a few requests of each key (one with a BYOK key, one per error kind)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(gateway_config(fake, database)) as served:
            made = httpx.post(
                f"{served.url}/admin/keys",
                headers={"authorization": f"Bearer {MASTER}"},
                json={"name": "team-key", "max_budget": 5.0, "budget_period": "monthly"},
            )
            made.raise_for_status()
            secret = made.json()["key"]
            with (
                OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as main,
                OpenAI(base_url=f"{served.url}/v1", api_key=OTHER_KEY, max_retries=0) as other,
                OpenAI(base_url=f"{served.url}/v1", api_key=secret, max_retries=0) as virtual,
            ):
                for model in ("fixed", "error-500", "error-429"):
                    _ask(main, model)
                for model in ("echo", "fixed"):
                    _ask(main, model, metadata={"team": "x"})
                _ask(main, "byok", openai_api_key=BYOK)
                for model in ("echo", "error-400"):
                    _ask(other, model)
                _ask(virtual, "fixed")
            flush_log(served)
            store = served.app.state.crossroads.log_store
            _await_rollup(served)
            main_ids = [r.id for r in served.call(store.query(key_id="main"))]
            other_ids = [r.id for r in served.call(store.query(key_id="other"))]
            yield Traffic(served, secret, hash_secret(secret), main_ids, other_ids)
