"""Live statistics per deployment over a sliding time window.

Routing strategies read them on every request (`perf`: lowest predicted latency for this
prompt size; `perf_avg`: lowest average latency; `throughput`: highest tokens per second)
and `GET /v1/providers/stats` shows them. Samples live in a deque, evicted lazily (on
every record and read) once older than the window, and capped at `max_samples`.

The one design decision: what routing reads on the hot path is kept up to date as samples
enter and leave, so those reads are O(1) and `record` stays cheap: running sums behind
`mean_latency` and `predicted_latency` (the floating-point ones rebuilt from the samples
every `max_samples` evictions, so rounding drift cannot build up), and the tokens-per-second
rates as a sorted list (a bisect insertion, never a sort) behind `throughput`. Only the
latency percentiles, read by the stats endpoint, sort the window.

Not thread-safe: the gateway records and reads from its event loop only.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DeploymentStats", "LiveStats", "Outcome"]

# Fewest samples with a prompt size before the latency line is trusted over the mean.
_MIN_FIT_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt on a deployment ended, as the stats see it."""

    ok: bool
    latency_ms: float  # whole request (non-streamed) or whole stream
    ttft_ms: float | None = None  # streams: time to first content
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int | None = None  # HTTP status seen (upstream's, or None for transport failures)


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    outcome: Outcome
    tokens_per_second: float | None  # computed once, at record time


def _tokens_per_second(outcome: Outcome) -> float | None:
    """Completion speed: after the first content for streams, over the whole call otherwise.

    An empty completion says nothing about speed, so it yields None. A stream whose
    content all arrived in its first chunk has no measurable generation time after it;
    its whole latency stands in.
    """
    tokens = outcome.completion_tokens
    if not outcome.ok or tokens is None or tokens <= 0:
        return None
    duration_ms = outcome.latency_ms
    if outcome.ttft_ms is not None and outcome.latency_ms - outcome.ttft_ms > 0:
        duration_ms = outcome.latency_ms - outcome.ttft_ms
    if duration_ms <= 0:
        return None
    return tokens / (duration_ms / 1000)


def _percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence; None when it is empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class DeploymentStats:
    """One deployment's samples over the last `window` seconds."""

    def __init__(
        self,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_samples: int = 2048,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        self.window = window
        self.max_samples = max_samples
        self._clock = clock
        self._samples: deque[_Sample] = deque()
        self._evictions = 0  # since the float sums were last rebuilt
        self._reset_sums()

    def _reset_sums(self) -> None:
        self._errors = 0
        self._ok = 0
        self._ok_latency = 0.0
        # Least-squares sums over successful samples with a prompt size (x: tokens, y: ms).
        # x sums are ints, hence exact.
        self._n = 0
        self._sx = 0
        self._sxx = 0
        self._sy = 0.0
        self._sxy = 0.0
        self._sizes: dict[int, int] = {}
        self._rates: list[float] = []  # tokens per second, ascending

    def _add(self, sample: _Sample, sign: int) -> None:
        rate = sample.tokens_per_second
        if rate is not None:
            if sign > 0:
                bisect.insort(self._rates, rate)
            else:
                del self._rates[bisect.bisect_left(self._rates, rate)]
        outcome = sample.outcome
        if not outcome.ok:
            self._errors += sign
            return
        self._ok += sign
        self._ok_latency += sign * outcome.latency_ms
        x = outcome.prompt_tokens
        if x is None:
            return
        y = outcome.latency_ms
        self._n += sign
        self._sx += sign * x
        self._sxx += sign * x * x
        self._sy += sign * y
        self._sxy += sign * x * y
        count = self._sizes.get(x, 0) + sign
        if count:
            self._sizes[x] = count
        else:
            del self._sizes[x]

    def _rebuild(self) -> None:
        self._reset_sums()
        for sample in self._samples:
            self._add(sample, +1)
        self._evictions = 0

    def _pop_oldest(self) -> None:
        self._add(self._samples.popleft(), -1)
        self._evictions += 1

    def _evict(self) -> None:
        cutoff = self._clock() - self.window
        samples = self._samples
        if not samples or samples[0].at >= cutoff:
            return
        while samples and samples[0].at < cutoff:
            self._pop_oldest()
        if not samples or self._evictions >= self.max_samples:
            self._rebuild()

    def record(self, outcome: Outcome) -> None:
        """Add one attempt's outcome: O(1) amortised, but for one bisect insertion."""
        self._evict()
        if len(self._samples) >= self.max_samples:
            self._pop_oldest()
            if self._evictions >= self.max_samples:
                self._rebuild()
        sample = _Sample(self._clock(), outcome, _tokens_per_second(outcome))
        self._samples.append(sample)
        self._add(sample, +1)

    def error_rate(self) -> float | None:
        """Failed share of the window's requests; None with no requests."""
        self._evict()
        if not self._samples:
            return None
        return self._errors / len(self._samples)

    def mean_latency(self) -> float | None:
        """Mean latency (ms) of the window's successful requests; None without any."""
        self._evict()
        if not self._ok:
            return None
        return max(0.0, self._ok_latency / self._ok)

    def predicted_latency(self, prompt_tokens: int) -> float | None:
        """Latency (ms) expected for a prompt of this size, never negative.

        A least-squares line `latency = a + b·prompt_tokens` over the window's successful
        samples that report a prompt size; with fewer than five such samples, or all of
        one size, the mean latency instead.
        """
        self._evict()
        n = self._n
        if n < _MIN_FIT_SAMPLES or len(self._sizes) < 2:
            return self.mean_latency()
        denominator = n * self._sxx - self._sx * self._sx  # > 0 with two distinct sizes
        slope = (n * self._sxy - self._sx * self._sy) / denominator
        intercept = (self._sy - slope * self._sx) / n
        return max(0.0, intercept + slope * prompt_tokens)

    def throughput(self) -> float | None:
        """Median completion tokens per second of the window's successful requests."""
        self._evict()
        return _percentile(self._rates, 50)

    def snapshot(self) -> dict[str, Any]:
        """The window's numbers for the stats endpoint (floats rounded to 3 decimals)."""
        self._evict()
        ok = [s.outcome for s in self._samples if s.outcome.ok]
        latency = sorted(o.latency_ms for o in ok)
        ttft = sorted(o.ttft_ms for o in ok if o.ttft_ms is not None)
        return {
            "requests": len(self._samples),
            "errors": self._errors,
            "error_rate": _rounded(self.error_rate()),
            "latency_ms": {
                "p50": _rounded(_percentile(latency, 50)),
                "p95": _rounded(_percentile(latency, 95)),
            },
            "ttft_ms": {
                "p50": _rounded(_percentile(ttft, 50)),
                "p95": _rounded(_percentile(ttft, 95)),
            },
            "tokens_per_second": {"p50": _rounded(self.throughput())},
            "window_s": self.window,
        }


class LiveStats:
    """Stats for every deployment, keyed by `Deployment.key` ("provider/upstream_model")."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._by_key: dict[str, DeploymentStats] = {}

    def record(self, key: str, outcome: Outcome) -> None:
        """Add one attempt's outcome to the deployment's stats."""
        self.get(key).record(outcome)

    def get(self, key: str) -> DeploymentStats:
        """The deployment's stats, created empty on first use."""
        stats = self._by_key.get(key)
        if stats is None:
            stats = self._by_key[key] = DeploymentStats(self.window, self._clock)
        return stats

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every known deployment's snapshot, by key."""
        return {key: stats.snapshot() for key, stats in self._by_key.items()}
