"""A request with several fields or query parameters the endpoint does not take gets one
400 naming all of them, so the caller fixes it in one go (not one round trip per name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, gateway_config, running_gateway

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database: Path = tmp_path_factory.mktemp("named") / "log.db"
    with running_gateway(gateway_config(fake_upstream, database)) as gateway:
        yield gateway


def _error(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    return error


def test_every_unknown_feedback_field_is_named(served: ServedApp) -> None:
    body = {"log_id": "x", "score": 1, "rating": 5, "stars": 4, "comment": "ok", "mood": "up"}
    response = httpx.post(f"{served.url}/v1/feedback", headers=AUTH, json=body)
    error = _error(response)
    assert error["param"] == "rating"
    assert error["message"].startswith("Unrecognized fields: 'rating', 'stars', 'mood'. ")


@pytest.mark.parametrize("path", ["/v1/logs", "/v1/usage"])
def test_every_unknown_query_parameter_is_named(served: ServedApp, path: str) -> None:
    query = "colour=red&start=0&shape=round&colour=blue&size=9"
    response = httpx.get(f"{served.url}{path}?{query}", headers=AUTH)
    error = _error(response)
    assert error["param"] == "colour"
    assert error["message"].startswith("Unknown query parameters 'colour', 'shape', 'size'; ")
