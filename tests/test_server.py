"""Endpoints around the chat route: models, health, readiness, OpenAPI, unknown URLs, auth modes."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.protocol.errors import GatewayError
from crossroads.server.auth import KeyRing, is_loopback
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, BEHAVIOURS, gateway_config, running_gateway


def test_models_lists_the_catalog_in_openai_format(client: OpenAI) -> None:
    models = client.models.list()
    names = {m.id for m in models.data}
    assert set(BEHAVIOURS) <= names
    fixed = next(m for m in models.data if m.id == "fixed")
    assert fixed.object == "model"
    assert fixed.owned_by == "fake"
    assert (fixed.model_extra or {})["pricing"]["prompt"] == 2.0


def test_models_needs_a_key(gateway: ServedApp) -> None:
    assert httpx.get(f"{gateway.url}/v1/models").status_code == 401


def test_health_and_ready(gateway: ServedApp) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_openapi_describes_the_chat_endpoint_with_extensions(gateway: ServedApp) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    for name in (
        "messages",
        "temperature",
        "session_id",
        "guided_json",
        "willingness_to_pay",
        "provider",
    ):
        assert name in request["properties"]
    assert request["properties"]["temperature"]["anyOf"][0]["maximum"] == 2
    assert "/v1/chat/completions" in document["paths"]


def test_unknown_urls_and_methods_get_the_envelope(gateway: ServedApp) -> None:
    missing = httpx.get(f"{gateway.url}/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_url"
    wrong_method = httpx.get(f"{gateway.url}/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_without_keys_loopback_clients_need_no_key(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    config = gateway_config(fake_upstream, tmp_path / "open.db", keys=False)
    with running_gateway(config) as served:
        with OpenAI(base_url=f"{served.url}/v1", api_key="anything", max_retries=0) as sdk:
            reply = sdk.chat.completions.create(
                model="fixed", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content


async def test_loopback_only_mode_refuses_other_hosts() -> None:
    ring = KeyRing([])
    assert ring.open
    assert (await ring.authenticate(None, "127.0.0.1")).key_id is None
    assert (await ring.authenticate("Bearer whatever", "::1")).key_id is None
    with pytest.raises(GatewayError, match="serves only clients on its own machine") as caught:
        await ring.authenticate(None, "10.1.2.3")
    assert getattr(caught.value, "status", None) == 403


async def test_key_checks() -> None:
    from crossroads.config import KeyConfig

    ring = KeyRing(
        [KeyConfig(name="a", key="sk-aaaaaaaaaaaa"), KeyConfig(name="b", key="sk-bbbbbbbbbbbb")]
    )
    b = await ring.authenticate("Bearer sk-bbbbbbbbbbbb", "10.0.0.1")
    assert (b.key_id, b.name, b.virtual_key) == ("b", "b", None)
    assert (await ring.authenticate("bearer  sk-aaaaaaaaaaaa", "10.0.0.1")).key_id == "a"
    for header in (None, "", "Basic abc", "Bearer", "Bearer sk-cccccccccccc"):
        with pytest.raises(GatewayError) as caught:
            await ring.authenticate(header, "127.0.0.1")
        assert getattr(caught.value, "status", None) == 401


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.8.8", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("example.com", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_sdk_exception_for_wrong_key_on_models(gateway: ServedApp) -> None:
    with OpenAI(base_url=f"{gateway.url}/v1", api_key="nope-nope-nope", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError):
            sdk.models.list()
    assert API_KEY  # the configured key is not what was sent
