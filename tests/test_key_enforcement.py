"""Virtual keys' limits enforced end to end: models, rpm, tpm, parallel requests, budgets,
the x-ratelimit-* headers, and usage history, through the official SDK."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, PRICE, flush_log, gateway_config, running_gateway

MASTER = "mk-enforce-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("enforce") / "gateway.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(gateway_config(fake_upstream, database)) as gateway:
            yield gateway


def new_key(served: ServedApp, **settings: Any) -> str:
    response = httpx.post(
        f"{served.url}/admin/keys",
        json={"name": "limited", **settings},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert response.status_code == 200, response.text
    secret: str = response.json()["key"]
    return secret


def sdk(served: ServedApp, key: str) -> OpenAI:
    return OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)


def test_a_model_outside_the_keys_list_is_403(served: ServedApp) -> None:
    client = sdk(served, new_key(served, models=["echo"]))
    assert [m.id for m in client.models.list()] == ["echo"]
    assert client.chat.completions.create(model="echo", messages=HELLO).choices  # type: ignore[arg-type]
    for model, extra in (("fixed", {}), ("echo", {"models": ["fixed"]}), ("echo,fixed", {})):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model=model, messages=HELLO, extra_body=extra)  # type: ignore[arg-type]
        assert caught.value.code == "model_not_allowed"  # type: ignore[attr-defined]


def test_rpm_limit_is_a_429_with_retry_after_and_ratelimit_headers(served: ServedApp) -> None:
    client = sdk(served, new_key(served, rpm_limit=3))
    raw = client.chat.completions.with_raw_response
    first = raw.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    raw.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    raw.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        raw.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    headers = caught.value.response.headers
    assert caught.value.code == "rpm_limit_exceeded"  # type: ignore[attr-defined]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_tpm_limit_counts_tokens(served: ServedApp) -> None:
    client = sdk(served, new_key(served, tpm_limit=300))
    client.chat.completions.create(model="echo", messages=HELLO, max_tokens=200)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="echo", messages=HELLO, max_tokens=1000)  # type: ignore[arg-type]
    assert caught.value.code == "tpm_limit_exceeded"  # type: ignore[attr-defined]


def test_parallel_limit_refuses_the_extra_concurrent_request(served: ServedApp) -> None:
    key = new_key(served, max_parallel_requests=1)

    def call() -> int:
        try:
            sdk(served, key).chat.completions.create(model="slow", messages=HELLO)  # type: ignore[arg-type]
        except openai.RateLimitError as exc:
            assert exc.code == "parallel_limit_exceeded"  # type: ignore[attr-defined]  # noqa: PT017
            return 429
        return 200

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: call(), range(4)))
    assert statuses[0] == 200 and 429 in statuses
    assert call() == 200  # the slot is free again afterwards


def test_a_budget_is_never_overspent(served: ServedApp) -> None:
    # Each call costs (5 prompt × $2 + 2 completion × $8) / 1M = $0.000026; the reservation is
    # for the most it may cost (max_tokens 10: $0.00009), so the budget admits calls while
    # spent + $0.00009 fits, then answers 429.
    key = new_key(served, max_budget=0.0005)
    client = sdk(served, key)
    served_costs = []
    refused = 0
    for _ in range(20):
        try:
            completion = client.chat.completions.create(model="echo", messages=HELLO, max_tokens=10)  # type: ignore[arg-type]
        except openai.RateLimitError as exc:
            assert exc.code == "budget_exceeded"  # type: ignore[attr-defined]  # noqa: PT017
            refused += 1
            continue
        served_costs.append(completion.usage.model_extra["cost"])  # type: ignore[union-attr]
    assert refused > 0
    assert sum(served_costs) <= 0.0005
    assert all(cost == pytest.approx(served_costs[0]) for cost in served_costs)
    price = PRICE
    assert served_costs[0] == pytest.approx((5 * price["input"] + 2 * price["output"]) / 1e6)


def test_a_revoked_key_is_refused_at_once(served: ServedApp) -> None:
    key = new_key(served)
    client = sdk(served, key)
    client.chat.completions.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    listed = httpx.get(
        f"{served.url}/admin/keys", headers={"Authorization": f"Bearer {MASTER}"}
    ).json()
    key_id = next(k["id"] for k in listed["data"] if k["key_prefix"][:10] == key[:10])
    httpx.delete(f"{served.url}/admin/keys/{key_id}", headers={"Authorization": f"Bearer {MASTER}"})
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "key_revoked"  # type: ignore[attr-defined]


def test_usage_history_sums_what_was_served(served: ServedApp) -> None:
    key = new_key(served)
    client = sdk(served, key)
    costs = [
        client.chat.completions.create(model="echo", messages=HELLO).usage.model_extra["cost"]  # type: ignore[arg-type, union-attr]
        for _ in range(3)
    ]
    flush_log(served)
    own = httpx.get(
        f"{served.url}/v1/usage",
        params={"group_by": "key"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert [row["requests"] for row in own["data"]] == [3]  # a virtual key sees only its own
    assert own["total"]["cost"] == pytest.approx(sum(costs), abs=1e-12)
    everyone = httpx.get(
        f"{served.url}/v1/usage",
        params={"group_by": "model"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).json()
    assert everyone["total"]["requests"] > 3
    bad = httpx.get(
        f"{served.url}/v1/usage",
        params={"group_by": "week"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"


def test_a_key_revoked_mid_stream(served: ServedApp) -> None:
    """The stream already admitted finishes and is logged and charged as usual; every later
    request with the key is refused."""
    key = new_key(served)
    client = sdk(served, key)
    listed = httpx.get(
        f"{served.url}/admin/keys", headers={"Authorization": f"Bearer {MASTER}"}
    ).json()
    key_id = next(k["id"] for k in listed["data"] if k["key_prefix"][:10] == key[:10])
    stream = client.chat.completions.create(
        model="slow-stream",
        messages=HELLO,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [next(stream)]
    revoked = httpx.delete(
        f"{served.url}/admin/keys/{key_id}", headers={"Authorization": f"Bearer {MASTER}"}
    )
    assert revoked.status_code == 200
    chunks += list(stream)
    assert chunks[-1].usage is not None
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="echo", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "key_revoked"  # type: ignore[attr-defined]
    flush_log(served)
    usage = httpx.get(
        f"{served.url}/v1/usage",
        params={"group_by": "key"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).json()
    row = next(r for r in usage["data"] if r["key"] == key_id)
    # The stream only: a refused key is stopped at authentication, before anything is logged.
    assert row["requests"] == 1 and row["errors"] == 0
    assert row["cost"] == pytest.approx(chunks[-1].usage.model_extra["cost"], abs=1e-12)
