"""Every inbound endpoint needs a key, and says so in its own API's envelope."""

from __future__ import annotations

import httpx
import pytest

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY
from tests.inbound_gateway import inbound_gateway

__all__ = ["inbound_gateway"]

ENDPOINTS = [
    ("POST", "/v1/messages", "anthropic"),
    ("POST", "/v1/messages/count_tokens", "anthropic"),
    ("POST", "/v1/responses", "openai"),
    ("GET", "/v1/responses/resp_x", "openai"),
    ("POST", "/v1/completions", "openai"),
]


@pytest.mark.parametrize(("method", "path", "envelope"), ENDPOINTS)
@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_a_key_is_needed(
    inbound_gateway: ServedApp, method: str, path: str, envelope: str, key: str | None
) -> None:
    headers = {} if key is None else {"x-api-key": key, "authorization": f"Bearer {key}"}
    response = httpx.request(
        method, f"{inbound_gateway.url}{path}", json={"model": "gpt-echo"}, headers=headers
    )
    assert response.status_code == 401
    body = response.json()
    if envelope == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == "authentication_error"
    else:
        assert body["error"]["type"] == "authentication_error"
        assert "code" in body["error"]


def test_anthropic_models_need_a_key_too(inbound_gateway: ServedApp) -> None:
    url = f"{inbound_gateway.url}/v1/models"
    versioned = {"anthropic-version": "2023-06-01"}
    assert httpx.get(url, headers=versioned).status_code == 401
    listed = httpx.get(url, headers={**versioned, "x-api-key": API_KEY})
    assert listed.status_code == 200
    assert listed.json()["data"][0]["type"] == "model"
