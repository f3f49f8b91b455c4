"""A virtual key's limits and model list hold whichever API a request comes in by, and
their refusals come in that API's envelope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.testing.server import ServedApp
from tests.conftest import running_gateway

MASTER = "mk-inbound-0123456789abcdef"
USER = [{"role": "user", "content": "alpha beta"}]


@pytest.fixture(scope="module")
def limited(
    fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedApp, str]]:
    database: Path = tmp_path_factory.mktemp("inbound-limits") / "log.db"
    model = {"deployments": [{"provider": "openai", "model": "echo"}]}
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}"},
            "providers": {"openai": {"base_url": fakes["openai"].base_url, "api_key": "sk-oa"}},
            "models": {"allowed": model, "forbidden": model},
        }
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(config) as served:
            created = httpx.post(
                f"{served.url}/admin/keys",
                json={"name": "limited", "models": ["allowed"], "rpm_limit": 3},
                headers={"authorization": f"Bearer {MASTER}"},
            )
            assert created.status_code == 200, created.text
            yield served, created.json()["key"]


def test_limits_and_model_list_hold_across_apis(limited: tuple[ServedApp, str]) -> None:
    served, key = limited
    with (
        anthropic.Anthropic(base_url=served.url, api_key=key, max_retries=0) as claude,
        OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0) as sdk,
    ):
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            claude.messages.create(model="forbidden", max_tokens=10, messages=USER)
        assert denied.value.response.json()["error"]["type"] == "permission_error"
        with pytest.raises(openai.PermissionDeniedError):
            sdk.responses.create(model="forbidden", input="x")
        # One request per API until the key's three a minute are spent.
        claude.messages.create(model="allowed", max_tokens=10, messages=USER)
        sdk.responses.create(model="allowed", input="x")
        sdk.completions.create(model="allowed", prompt="x")
        with pytest.raises(anthropic.RateLimitError) as limited_error:
            claude.messages.create(model="allowed", max_tokens=10, messages=USER)
        assert limited_error.value.response.json()["error"]["type"] == "rate_limit_error"
        assert limited_error.value.response.headers["retry-after"]
        with pytest.raises(openai.RateLimitError):
            sdk.responses.create(model="allowed", input="x")
