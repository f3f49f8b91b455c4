"""The gateway under fuzz: the real app on uvicorn, three fake upstreams, real keys.

One fake per wire dialect (OpenAI, Anthropic, Gemini), each serving only behaviours that
always succeed, so any 5xx the fuzzer sees is the gateway's own. Callers authenticate as a
static key from the config (allowed to read every log record) or as a virtual key made
through the admin API with every limit set — parallel requests, a budget, rpm and tpm —
so that a request that leaks its slot or its budget reservation shows up in the checks.
A second virtual key is the target of the admin API's mutations (PATCH, DELETE), never the
one the chat requests use.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from crossroads.config import parse_config
from crossroads.server import create_app
from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.testing.fake_anthropic import FakeAnthropic
from crossroads.testing.fake_gemini import FakeGemini
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp, serve_in_thread

__all__ = ["MASTER_KEY", "PARALLEL", "STATIC_KEY", "Stage", "fuzz_stage"]

MASTER_KEY = "mk-fuzz-0123456789abcdef"
STATIC_KEY = "sk-fuzz-static-0123456789abcdef"
PARALLEL = 8  # the chat key's max_parallel_requests, above the runner's concurrency
PRICE = {"input": 2.0, "output": 8.0}
DIALECTS = ("openai", "anthropic", "gemini")
# Public model suffix → fake behaviour; every one answers 200.
BEHAVIOURS = {
    "echo": "echo",
    "tool": "tool",
    "think": "think=Two_plus_two+reply=Four.",
    "slow": "echo+delay=300",  # for the checks: holds its slot long enough to overlap
}


@dataclass(slots=True)
class Stage:
    served: ServedApp
    virtual_key: str  # secret of the limited key the chat requests use
    virtual_key_id: str
    victim_id: str  # the key the admin mutations may change or revoke

    @property
    def port(self) -> int:
        return self.served.port

    def credential(self, auth: str) -> bytes | None:
        """The Authorization header value for a case's `auth`."""
        secret = {"virtual": self.virtual_key, "static": STATIC_KEY, "master": MASTER_KEY}
        return None if auth not in secret else b"Bearer " + secret[auth].encode()


def _config(fakes: dict[str, Any], database_url: str) -> Any:
    providers = {
        dialect: {
            "dialect": dialect,
            "base_url": fakes[dialect].base_url,
            "api_key": f"sk-{dialect}-upstream",
        }
        for dialect in DIALECTS
    }
    models = {
        f"{dialect}-{name}": {
            "deployments": [{"provider": dialect, "model": behaviour, "price": PRICE}]
        }
        for dialect in DIALECTS
        for name, behaviour in BEHAVIOURS.items()
    }
    return parse_config(
        {
            "storage": {"database_url": database_url, "flush_interval": 0.05},
            "keys": [{"name": "fuzz-static", "key": STATIC_KEY, "logs": "all"}],
            "providers": providers,
            "models": models,
        }
    )


def _admin_create(served: ServedApp, settings: dict[str, Any]) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(
        f"{served.url}/admin/keys",
        data=orjson.dumps(settings),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        created: dict[str, Any] = orjson.loads(response.read())
    return created


@contextlib.contextmanager
def fuzz_stage(database_url: str | None = None) -> Iterator[Stage]:
    """Fakes, gateway and keys, torn down on exit; SQLite in a temporary directory unless
    `database_url` names another database."""
    previous = os.environ.get(MASTER_KEY_ENV)
    os.environ[MASTER_KEY_ENV] = MASTER_KEY
    with (
        tempfile.TemporaryDirectory(prefix="crossroads-fuzz-") as directory,
        FakeOpenAI(api_key="sk-openai-upstream", record=False).running_in_thread() as oa,
        FakeAnthropic(api_key="sk-anthropic-upstream", record=False).running_in_thread() as an,
        FakeGemini(api_key="sk-gemini-upstream", record=False).running_in_thread() as ge,
    ):
        try:
            url = database_url or f"sqlite+aiosqlite:///{Path(directory) / 'fuzz.db'}"
            fakes = {"openai": oa, "anthropic": an, "gemini": ge}
            with serve_in_thread(create_app(_config(fakes, url))) as served:
                limited = _admin_create(
                    served,
                    {
                        "name": "fuzz-limited",
                        "max_parallel_requests": PARALLEL,
                        "max_budget": 1000.0,
                        "rpm_limit": 1_000_000,
                        "tpm_limit": 2**31 - 1,
                    },
                )
                victim = _admin_create(served, {"name": "fuzz-victim"})
                yield Stage(served, limited["key"], limited["id"], victim["id"])
        finally:
            if previous is None:
                os.environ.pop(MASTER_KEY_ENV, None)
            else:
                os.environ[MASTER_KEY_ENV] = previous
