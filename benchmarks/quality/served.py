"""A gateway in front of the fake OpenAI upstream, for the quality benchmarks.

Each benchmark item is its own model whose deployment's upstream id is a fake behaviour:
`reply=a|b|…` answers alternative `seed mod count`, which is how an item's candidate answers,
samples and regenerations are fixed in advance with a seeded draw.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from crossroads.config import parse_config
from crossroads.server.app import create_app
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import serve_in_thread

__all__ = ["PRICE", "behaviour", "gateway"]

KEY = "sk-bench-quality-0123456789"
PRICE = {"input": 1.0, "output": 2.0}


def behaviour(alternatives: list[str], delay_ms: int = 0) -> str:
    """A fake upstream id answering `alternatives[seed % len]` (text made directive-safe)."""
    safe = [a.replace("+", " plus ").replace("|", "/").replace(" ", "_") for a in alternatives]
    spec = "reply=" + "|".join(safe)
    return f"{spec}+delay={delay_ms}" if delay_ms else spec


@contextlib.contextmanager
def gateway(
    models: dict[str, str], quality: dict[str, Any] | None = None
) -> Iterator[httpx.Client]:
    """An httpx client on a gateway serving `models` (name → fake behaviour)."""
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI().running_in_thread() as fake:
        data = {
            "storage": {"database_url": f"sqlite+aiosqlite:///{Path(folder) / 'log.db'}"},
            "providers": {"fake": {"base_url": fake.base_url}},
            "keys": [{"name": "bench", "key": KEY}],
            "models": {
                name: {"deployments": [{"provider": "fake", "model": spec, "price": PRICE}]}
                for name, spec in models.items()
            },
            "quality": quality or {},
        }
        with serve_in_thread(create_app(parse_config(data))) as served:
            with httpx.Client(
                base_url=f"{served.url}/v1",
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=60,
            ) as client:
                yield client
