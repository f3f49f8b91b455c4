"""Live stats: the sliding window, percentiles, error rate, latency line and throughput."""

from __future__ import annotations

import pytest

from crossroads.routing.stats import DeploymentStats, LiveStats, Outcome


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def ok(
    latency_ms: float,
    *,
    ttft_ms: float | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Outcome:
    return Outcome(
        ok=True,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        status=200,
    )


def failed(latency_ms: float = 10.0, status: int | None = 500) -> Outcome:
    return Outcome(ok=False, latency_ms=latency_ms, status=status)


def test_empty_stats_know_nothing(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    assert stats.error_rate() is None
    assert stats.mean_latency() is None
    assert stats.predicted_latency(100) is None
    assert stats.throughput() is None
    assert stats.snapshot() == {
        "requests": 0,
        "errors": 0,
        "error_rate": None,
        "latency_ms": {"p50": None, "p95": None},
        "ttft_ms": {"p50": None, "p95": None},
        "tokens_per_second": {"p50": None},
        "window_s": 60,
    }


def test_samples_older_than_the_window_are_evicted(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(ok(100))
    clock.advance(30)
    stats.record(ok(300))
    assert stats.mean_latency() == 200
    clock.advance(30)  # the first sample is exactly one window old: still in
    assert stats.snapshot()["requests"] == 2
    clock.advance(0.001)
    assert stats.mean_latency() == 300
    assert stats.snapshot()["requests"] == 1
    clock.advance(30)
    assert stats.mean_latency() is None
    assert stats.snapshot()["requests"] == 0


def test_eviction_also_forgets_errors_and_fit(clock: FakeClock) -> None:
    stats = DeploymentStats(10, clock)
    for tokens in (100, 200, 300, 400, 500):
        stats.record(ok(50 + 0.2 * tokens, prompt_tokens=tokens))
    stats.record(failed())
    clock.advance(11)
    stats.record(ok(80, prompt_tokens=100))
    assert stats.error_rate() == 0
    assert stats.predicted_latency(1000) == 80  # one sample left: the mean


def test_percentiles_are_nearest_rank(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    for latency in range(20, 0, -1):  # 20, 19, …, 1: order of arrival must not matter
        stats.record(ok(latency * 10, ttft_ms=latency))
    snapshot = stats.snapshot()
    # 20 samples: p50 is the 10th smallest, p95 the 19th.
    assert snapshot["latency_ms"] == {"p50": 100, "p95": 190}
    assert snapshot["ttft_ms"] == {"p50": 10, "p95": 19}


def test_percentiles_of_odd_and_single_samples(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(ok(42))
    assert stats.snapshot()["latency_ms"] == {"p50": 42, "p95": 42}
    stats.record(ok(7))
    stats.record(ok(1000))
    assert stats.snapshot()["latency_ms"] == {"p50": 42, "p95": 1000}


def test_percentiles_count_successes_only(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(failed(latency_ms=5000))
    snapshot = stats.snapshot()
    assert snapshot["latency_ms"] == {"p50": None, "p95": None}
    assert snapshot["requests"] == 1
    stats.record(ok(100))
    assert stats.snapshot()["latency_ms"] == {"p50": 100, "p95": 100}
    assert stats.mean_latency() == 100


def test_error_rate(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    for _ in range(3):
        stats.record(ok(100))
    stats.record(failed(status=503))
    stats.record(failed(status=None))
    assert stats.error_rate() == pytest.approx(0.4)
    snapshot = stats.snapshot()
    assert snapshot["requests"] == 5
    assert snapshot["errors"] == 2
    assert snapshot["error_rate"] == 0.4


def test_predicted_latency_recovers_an_exact_line(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    for tokens in (100, 400, 250, 1000, 700, 100):
        stats.record(ok(50 + 0.2 * tokens, prompt_tokens=tokens))
    assert stats.predicted_latency(0) == pytest.approx(50)
    assert stats.predicted_latency(500) == pytest.approx(150)
    assert stats.predicted_latency(10_000) == pytest.approx(2050)


def test_predicted_latency_ignores_failures_and_unsized_samples(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    for tokens in (100, 200, 300, 400, 500):
        stats.record(ok(50 + 0.2 * tokens, prompt_tokens=tokens))
    stats.record(Outcome(ok=False, latency_ms=99_999, prompt_tokens=300))
    stats.record(ok(5000))  # no prompt size: counts in the mean, not in the line
    assert stats.predicted_latency(1000) == pytest.approx(250)


def test_predicted_latency_falls_back_to_the_mean_with_too_few_samples(
    clock: FakeClock,
) -> None:
    stats = DeploymentStats(60, clock)
    for tokens in (100, 200, 300, 400):
        stats.record(ok(50 + 0.2 * tokens, prompt_tokens=tokens))
    assert stats.predicted_latency(10_000) == pytest.approx(100)  # mean of 70, 90, 110, 130
    stats.record(ok(150, prompt_tokens=500))
    assert stats.predicted_latency(10_000) == pytest.approx(2050)


def test_predicted_latency_falls_back_to_the_mean_with_one_size(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    for latency in (100, 200, 300, 400, 500, 600):
        stats.record(ok(latency, prompt_tokens=256))
    assert stats.predicted_latency(10_000) == pytest.approx(350)


def test_predicted_latency_is_never_negative(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    for tokens in (100, 200, 300, 400, 500):  # latency falls as prompts grow
        stats.record(ok(600 - tokens, prompt_tokens=tokens))
    assert stats.predicted_latency(300) == pytest.approx(300)
    assert stats.predicted_latency(10_000) == 0


def test_throughput_of_non_streamed_requests_uses_the_whole_latency(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(ok(2000, completion_tokens=100))  # 50 tokens/s
    stats.record(ok(1000, completion_tokens=100))  # 100 tokens/s
    stats.record(ok(500, completion_tokens=100))  # 200 tokens/s
    assert stats.throughput() == 100
    assert stats.snapshot()["tokens_per_second"] == {"p50": 100}


def test_throughput_of_streams_counts_from_first_content(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(ok(3000, ttft_ms=1000, completion_tokens=100))  # 100 tokens over 2 s
    assert stats.throughput() == 50


def test_throughput_edge_cases(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(ok(1000))  # no token count
    stats.record(ok(1000, completion_tokens=0))  # empty completion says nothing
    stats.record(Outcome(ok=False, latency_ms=1000, completion_tokens=10))
    assert stats.throughput() is None
    stats.record(ok(500, ttft_ms=500, completion_tokens=40))  # one chunk: whole latency
    assert stats.throughput() == 80


def test_throughput_follows_the_window(clock: FakeClock) -> None:
    stats = DeploymentStats(60, clock)
    stats.record(ok(1000, completion_tokens=10))
    assert stats.throughput() == 10
    clock.advance(61)
    assert stats.throughput() is None
    stats.record(ok(1000, completion_tokens=30))
    assert stats.throughput() == 30


def test_max_samples_caps_the_window(clock: FakeClock) -> None:
    stats = DeploymentStats(3600, clock, max_samples=4)
    for latency in (1000, 1000, 10, 20, 30, 40):
        stats.record(ok(latency))
        clock.advance(1)
    assert stats.snapshot()["requests"] == 4
    assert stats.mean_latency() == 25
    assert stats.snapshot()["latency_ms"] == {"p50": 20, "p95": 40}


def test_sums_stay_exact_across_many_evictions(clock: FakeClock) -> None:
    stats = DeploymentStats(3600, clock, max_samples=8)
    for i in range(1000):
        tokens = 100 + (i % 7) * 50
        stats.record(ok(50 + 0.2 * tokens + (i % 3) * 1e-7, prompt_tokens=tokens))
    assert stats.predicted_latency(1000) == pytest.approx(250, abs=1e-3)
    survivors = [50 + 0.2 * (100 + (i % 7) * 50) + (i % 3) * 1e-7 for i in range(992, 1000)]
    assert stats.mean_latency() == pytest.approx(sum(survivors) / 8)


def test_snapshot_shape(clock: FakeClock) -> None:
    stats = DeploymentStats(120, clock)
    stats.record(ok(1234.56789, ttft_ms=234.56789, prompt_tokens=10, completion_tokens=100))
    stats.record(failed())
    assert stats.snapshot() == {
        "requests": 2,
        "errors": 1,
        "error_rate": 0.5,
        "latency_ms": {"p50": 1234.568, "p95": 1234.568},
        "ttft_ms": {"p50": 234.568, "p95": 234.568},
        "tokens_per_second": {"p50": 100.0},
        "window_s": 120,
    }


def test_invalid_settings_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="window"):
        DeploymentStats(0, clock)
    with pytest.raises(ValueError, match="max_samples"):
        DeploymentStats(60, clock, max_samples=0)


def test_live_stats_keeps_one_record_per_deployment(clock: FakeClock) -> None:
    live = LiveStats(60, clock)
    assert live.snapshot() == {}
    fresh = live.get("openai/gpt-4o-mini")
    assert fresh is live.get("openai/gpt-4o-mini")
    assert fresh.window == 60
    live.record("openai/gpt-4o-mini", ok(100))
    live.record("groq/llama-3.1-8b", failed())
    snapshot = live.snapshot()
    assert set(snapshot) == {"openai/gpt-4o-mini", "groq/llama-3.1-8b"}
    assert snapshot["openai/gpt-4o-mini"]["requests"] == 1
    assert snapshot["groq/llama-3.1-8b"]["errors"] == 1
    clock.advance(61)
    assert live.snapshot()["openai/gpt-4o-mini"]["requests"] == 0
