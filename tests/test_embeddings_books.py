"""`POST /v1/embeddings` keeps the books like chat: logged (marked `metadata.endpoint`), in
`/v1/usage`, and counted against a virtual key's rpm, tpm and budget, through the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.retrieval.embedder import LOCAL_MODEL
from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import PRICE, flush_log, gateway_config, running_gateway

MASTER = "mk-embed-books-0123456789abcdef"


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("embed-books") / "gateway.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(gateway_config(fake_upstream, database)) as gateway:
            yield gateway


def new_key(served: ServedApp, **settings: Any) -> str:
    response = httpx.post(
        f"{served.url}/admin/keys",
        json={"name": "embedder", **settings},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert response.status_code == 200, response.text
    secret: str = response.json()["key"]
    return secret


def sdk(served: ServedApp, key: str) -> OpenAI:
    return OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)


def get(served: ServedApp, path: str, key: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(
        f"{served.url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_embeddings_are_logged_and_in_usage(served: ServedApp) -> None:
    key = new_key(served)
    client = sdk(served, key)
    upstream = client.embeddings.with_raw_response.create(model="fixed", input=["one two three"])
    log_id = upstream.headers["x-crossroads-log-id"]
    cost = upstream.parse().usage.model_extra["cost"]  # type: ignore[index]
    assert cost == pytest.approx(upstream.parse().usage.prompt_tokens * PRICE["input"] / 1e6)
    client.embeddings.create(model=LOCAL_MODEL, input="local text")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=LOCAL_MODEL, input=[1, 2])
    flush_log(served)

    logged = get(served, "/v1/logs", key, **{"metadata.endpoint": "embeddings"})["data"]
    assert len(logged) == 3
    assert sorted(r["status_code"] for r in logged) == [200, 200, 400]
    record = get(served, f"/v1/logs/{log_id}", key)
    assert record["model_requested"] == "fixed" and record["provider"] == "fake"
    assert record["cost"] == pytest.approx(cost) and record["prompt_tokens"] > 0
    assert record["response"]["embeddings"] == 1 and "data" not in record["response"]

    page = httpx.get(f"{served.url}/ui/logs/{log_id}", headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200 and "embeddings" in page.text  # the dashboard's record

    usage = get(served, "/v1/usage", key, group_by="model")
    assert usage["total"]["requests"] == 3
    assert usage["total"]["cost"] == pytest.approx(cost, abs=1e-12)


def test_rpm_counts_embeddings(served: ServedApp) -> None:
    client = sdk(served, new_key(served, rpm_limit=2))
    first = client.embeddings.with_raw_response.create(model=LOCAL_MODEL, input="a")
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    client.embeddings.create(model="fixed", input="b")
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model="fixed", input="c")
    assert caught.value.code == "rpm_limit_exceeded"


def test_tpm_counts_embedding_tokens(served: ServedApp) -> None:
    # 40 words: reserved as 50 tokens (200 characters), settled at the 40 the upstream counts.
    client = sdk(served, new_key(served, tpm_limit=60))
    client.embeddings.create(model="fixed", input="word " * 40)
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model="fixed", input="word " * 40)
    assert caught.value.code == "tpm_limit_exceeded"


def test_budget_counts_embedding_cost(served: ServedApp) -> None:
    # Each call reserves ≈ 250 tokens × $2/1M = $0.0005; the budget admits two at most.
    client = sdk(served, new_key(served, max_budget=0.0011))
    refused = 0
    for _ in range(6):
        try:
            client.embeddings.create(model="fixed", input="word " * 200)
        except openai.RateLimitError as exc:
            assert exc.code == "budget_exceeded"  # noqa: PT017
            refused += 1
    assert refused > 0


def test_a_key_limited_to_other_models_cannot_embed_upstream(served: ServedApp) -> None:
    client = sdk(served, new_key(served, models=["echo"]))
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="fixed", input="x")
    assert client.embeddings.create(model=LOCAL_MODEL, input="x").data
