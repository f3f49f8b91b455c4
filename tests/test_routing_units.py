"""Strategies, retry verdicts and backoff, in isolation."""

from __future__ import annotations

import random

import pytest

from crossroads.catalog import Deployment
from crossroads.config import Price, RoutingConfig
from crossroads.protocol.chat import ChatCompletionRequest
from crossroads.providers.base import UpstreamError
from crossroads.routing.plan import Strategies
from crossroads.routing.retry import Backoff, verdict
from crossroads.routing.stats import LiveStats, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(provider: str, price: tuple[float, float] = (1, 1), weight: float = 1) -> Deployment:
    return Deployment(
        model="m",
        provider=provider,
        upstream_model="u",
        price=Price(input=price[0], output=price[1]),
        weight=weight,
    )


def request(text: str, max_tokens: int | None = None) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    return ChatCompletionRequest.model_validate(body)


def test_price_weighs_prompt_and_expected_completion() -> None:
    stats = LiveStats(60, Clock())
    cheap_in = deployment("cheap-in", (1, 20))
    cheap_out = deployment("cheap-out", (10, 2))
    strategies = Strategies(stats)
    # A long prompt and a short answer: input price dominates.
    long_prompt = request("word " * 4000, max_tokens=10)
    assert strategies.order("price", [cheap_out, cheap_in], long_prompt)[0] is cheap_in
    # A short prompt and a long answer: output price dominates.
    short_prompt = request("hi", max_tokens=4000)
    assert strategies.order("price", [cheap_in, cheap_out], short_prompt)[0] is cheap_out


def test_perf_predicts_latency_for_this_prompt_size() -> None:
    clock = Clock()
    stats = LiveStats(600, clock)
    flat = deployment("flat")  # 400 ms whatever the prompt
    steep = deployment("steep")  # fast on short prompts, slow on long ones
    for tokens in (10, 100, 500, 1000, 2000, 4000, 8000):
        stats.record(flat.key, Outcome(ok=True, latency_ms=400, prompt_tokens=tokens))
        stats.record(
            steep.key, Outcome(ok=True, latency_ms=50 + 0.2 * tokens, prompt_tokens=tokens)
        )
    strategies = Strategies(stats)
    assert strategies.order("perf", [flat, steep], request("hi"))[0] is steep
    assert strategies.order("perf", [steep, flat], request("word " * 12000))[0] is flat
    # perf_avg ignores prompt size: steep's mean (≈ 496 ms) is above flat's.
    assert strategies.order("perf_avg", [steep, flat], request("hi"))[0] is flat


def test_unmeasured_deployments_go_first_so_they_get_measured() -> None:
    stats = LiveStats(60, Clock())
    known, new = deployment("known"), deployment("new")
    stats.record(known.key, Outcome(ok=True, latency_ms=10, prompt_tokens=5, completion_tokens=50))
    strategies = Strategies(stats)
    assert strategies.order("perf_avg", [known, new], request("hi"))[0] is new
    assert strategies.order("throughput", [known, new], request("hi"))[0] is new


def test_throughput_prefers_more_tokens_per_second() -> None:
    stats = LiveStats(60, Clock())
    slow, quick = deployment("slow"), deployment("quick")
    stats.record(slow.key, Outcome(ok=True, latency_ms=1000, completion_tokens=20))
    stats.record(quick.key, Outcome(ok=True, latency_ms=1000, completion_tokens=200))
    assert Strategies(stats).order("throughput", [slow, quick], request("hi"))[0] is quick


def test_weighted_order_follows_weights() -> None:
    stats = LiveStats(60, Clock())
    heavy, light = deployment("heavy", weight=9), deployment("light", weight=1)
    strategies = Strategies(stats, random.Random(7))
    firsts = [strategies.order("weighted", [light, heavy], request("hi"))[0] for _ in range(1000)]
    share = sum(d is heavy for d in firsts) / 1000
    assert 0.85 < share < 0.95
    assert all(
        len(strategies.order("weighted", [light, heavy], request("hi"))) == 2 for _ in range(5)
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UpstreamError("t", failure="timeout"), "retry"),
        (UpstreamError("c", failure="connection"), "retry"),
        (UpstreamError("s", failure="stream_interrupted"), "retry"),
        *(
            (UpstreamError("h", failure="http", status=s), "retry")
            for s in (408, 429, 500, 502, 503, 504, 529)
        ),
        *((UpstreamError("h", failure="http", status=s), "failover") for s in (401, 403, 404)),
        *((UpstreamError("h", failure="http", status=s), "fail") for s in (400, 413, 422)),
    ],
)
def test_verdicts(error: UpstreamError, expected: str) -> None:
    assert verdict(error) == expected


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    config = RoutingConfig(backoff_initial=0.1, backoff_max=0.5, max_retry_after=3)
    backoff = Backoff(config, random.Random(1))
    for retry, ceiling in ((0, 0.1), (1, 0.2), (2, 0.4), (5, 0.5)):
        waits = [backoff.delay(retry, None) for _ in range(200)]
        assert all(w is not None and 0 <= w <= ceiling for w in waits)
        assert max(w for w in waits if w is not None) > ceiling * 0.8
    assert backoff.delay(0, 2.0) == 2.0  # Retry-After is a floor
    assert backoff.delay(0, 3.5) is None  # longer than max_retry_after: fail over instead
