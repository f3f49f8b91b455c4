"""The response cache through the gateway, with the official SDK, on each backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from openai import OpenAI

from crossroads.config import Config
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY, gateway_config, running_gateway

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable (set CI to make this fail)")


def _config(fake: FakeOpenAI, database: Path, backend: str) -> Config:
    base = gateway_config(fake, database)
    data = base.model_dump(mode="json", exclude_none=True)
    data["cache"] = {
        "backend": backend,
        "url": REDIS_URL if backend == "redis" else None,
        "mode": "exact",
        "models": {"echo": {"mode": "semantic"}},
        "keys": {"other": {"mode": "off"}},
    }
    return Config.model_validate(data)


@pytest.fixture(
    scope="module",
    params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)],
)
def cached(
    request: pytest.FixtureRequest,
    fake_upstream: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedApp]:
    if request.param == "redis":
        _redis_or_skip()
    database = tmp_path_factory.mktemp("cache") / "log.db"
    with running_gateway(_config(fake_upstream, database, request.param)) as served:
        yield served


@pytest.fixture
def sdk(cached: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{cached.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def _ask(sdk: OpenAI, text: str, model: str = "fixed", **extra: Any) -> Any:
    return sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **extra
    )


def _upstream_calls(fake: FakeOpenAI) -> int:
    return sum(1 for r in fake.requests if r["path"].endswith("/chat/completions"))


def _wait_stored(cached: ServedApp) -> None:
    """Shared backends store off the answer's path: wait for pending writes."""
    for kind in cached.app.state.crossroads.gateway.stage_kinds:
        if kind.name == "cache":
            cached.call(kind.drain())


def test_exact_hit_costs_nothing_and_skips_the_upstream(
    sdk: OpenAI, cached: ServedApp, fake_upstream: FakeOpenAI
) -> None:
    text = f"Say hello {uuid.uuid4().hex}"
    first = _ask(sdk, text, temperature=0)
    assert first.model_extra["cache"] == {"hit": False, "type": "exact"}  # type: ignore[index]
    _wait_stored(cached)
    calls = _upstream_calls(fake_upstream)
    second = _ask(sdk, f"  {text} ", temperature=0)  # whitespace is normalised away
    assert _upstream_calls(fake_upstream) == calls
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.model_extra["cache"] == {"hit": True, "type": "exact"}  # type: ignore[index]
    usage = second.usage.model_extra  # type: ignore[union-attr]
    assert usage["cost"] == 0.0
    assert usage["prompt_cache_hit_tokens"] == first.usage.prompt_tokens  # type: ignore[union-attr]
    different = _ask(sdk, text, temperature=0, max_tokens=7)  # sampling params are in the key
    assert different.model_extra["cache"]["hit"] is False  # type: ignore[index]


def test_sampled_requests_are_not_cached_unless_asked(sdk: OpenAI, cached: ServedApp) -> None:
    text = f"A poem {uuid.uuid4().hex}"
    first = _ask(sdk, text, temperature=0.8)
    assert "cache" not in (first.model_extra or {})
    asked = {"cache": {"mode": "exact"}}
    _ask(sdk, text, temperature=0.8, extra_body=asked)
    _wait_stored(cached)
    again = _ask(sdk, text, temperature=0.8, extra_body=asked)
    assert again.model_extra["cache"]["hit"] is True  # type: ignore[index]


def test_bypass_by_header_or_body_and_namespaces(sdk: OpenAI, cached: ServedApp) -> None:
    text = f"Cached? {uuid.uuid4().hex}"
    _ask(sdk, text)
    _wait_stored(cached)
    bypassed = _ask(sdk, text, extra_headers={"x-crossroads-cache": "bypass"})
    assert "cache" not in (bypassed.model_extra or {})
    body = _ask(sdk, text, extra_body={"cache": {"mode": "bypass"}})
    assert "cache" not in (body.model_extra or {})
    elsewhere = _ask(sdk, text, extra_body={"cache": {"namespace": "team-b"}})
    assert elsewhere.model_extra["cache"]["hit"] is False  # type: ignore[index]
    assert _ask(sdk, text).model_extra["cache"]["hit"] is True  # type: ignore[index]
    bad = httpx.post(
        f"{cached.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {API_KEY}", "x-crossroads-cache": "sometimes"},
        json={"model": "fixed", "messages": [{"role": "user", "content": text}]},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-crossroads-cache"


def test_keys_never_share_entries(sdk: OpenAI, cached: ServedApp) -> None:
    text = f"Private {uuid.uuid4().hex}"
    _ask(sdk, text)
    _wait_stored(cached)
    with OpenAI(base_url=f"{cached.url}/v1", api_key=OTHER_KEY, max_retries=0) as other:
        # `other` has caching off in config; asking for it still looks in its own namespace.
        answer = _ask(other, text, extra_body={"cache": {"mode": "exact"}})
    assert answer.model_extra["cache"]["hit"] is False  # type: ignore[index]


def test_streamed_hit_and_streamed_store(sdk: OpenAI, cached: ServedApp) -> None:
    text = f"Stream me {uuid.uuid4().hex}"
    chunks = list(_ask(sdk, text, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _wait_stored(cached)
    again = list(_ask(sdk, text, stream=True, stream_options={"include_usage": True}))
    replayed = "".join(c.choices[0].delta.content or "" for c in again if c.choices)
    assert replayed == streamed
    last = again[-1]
    assert last.model_extra["cache"]["hit"] is True  # type: ignore[index]
    assert last.usage is not None and last.usage.model_extra["cost"] == 0.0  # type: ignore[union-attr]
    plain = _ask(sdk, text)
    assert plain.model_extra["cache"]["hit"] is True  # type: ignore[index]


def test_semantic_hits_paraphrases_but_not_other_cities(sdk: OpenAI, cached: ServedApp) -> None:
    tag = uuid.uuid4().hex[:8]
    system = {"role": "system", "content": f"Session {tag}."}

    def ask(text: str) -> Any:
        return sdk.chat.completions.create(
            model="echo", messages=[system, {"role": "user", "content": text}]
        )

    first = ask("What is the population of Paris?")
    _wait_stored(cached)
    paraphrase = ask("what is the population of Paris")
    assert paraphrase.model_extra["cache"]["type"] == "semantic"  # type: ignore[index]
    assert paraphrase.choices[0].message.content == first.choices[0].message.content
    lyon = ask("What is the population of Lyon?")
    assert lyon.model_extra["cache"]["hit"] is False  # type: ignore[index]
    assert "Lyon" in (lyon.choices[0].message.content or "")


def test_hits_are_logged_as_hits(sdk: OpenAI, cached: ServedApp) -> None:
    text = f"Log me {uuid.uuid4().hex}"
    _ask(sdk, text)
    _wait_stored(cached)
    raw = sdk.chat.completions.with_raw_response.create(
        model="fixed", messages=[{"role": "user", "content": text}]
    )
    log_id = raw.headers["x-crossroads-log-id"]
    cached.call(cached.app.state.crossroads.log_writer.flush())
    record = httpx.get(
        f"{cached.url}/v1/logs/{log_id}", headers={"authorization": f"Bearer {API_KEY}"}
    ).json()
    assert record["response"]["cache"]["hit"] is True
    assert record["cost"] == 0.0 and record["cached_tokens"] == record["prompt_tokens"]


def test_refresh_skips_the_lookup_but_stores(
    sdk: OpenAI, cached: ServedApp, fake_upstream: FakeOpenAI
) -> None:
    text = f"Refresh {uuid.uuid4().hex}"
    _ask(sdk, text)
    _wait_stored(cached)
    calls = _upstream_calls(fake_upstream)
    refreshed = _ask(sdk, text, extra_headers={"x-crossroads-cache": "refresh"})
    assert refreshed.model_extra["cache"]["hit"] is False  # type: ignore[index]
    assert _upstream_calls(fake_upstream) == calls + 1
    _wait_stored(cached)
    assert _ask(sdk, text).model_extra["cache"]["hit"] is True  # type: ignore[index]
