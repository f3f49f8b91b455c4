"""Circuit breakers: when they open, how they probe, how they close."""

from __future__ import annotations

import pytest

from crossroads.config import BreakerConfig
from crossroads.routing.breaker import Breakers, CircuitBreaker


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


def breaker(clock: FakeClock, **policy: float) -> CircuitBreaker:
    settings: dict[str, float] = {
        "consecutive_failures": 3,
        "error_rate": 0.5,
        "min_requests": 10,
        "window": 60,
        "cooldown": 30,
        "half_open_probes": 1,
    }
    return CircuitBreaker(BreakerConfig.model_validate({**settings, **policy}), clock)


def opened(clock: FakeClock, **policy: float) -> CircuitBreaker:
    circuit = breaker(clock, **policy)
    for _ in range(circuit.policy.consecutive_failures):
        circuit.on_failure()
    assert circuit.state == "open"
    return circuit


def test_a_new_breaker_is_closed_and_allows(clock: FakeClock) -> None:
    circuit = breaker(clock)
    assert circuit.state == "closed"
    assert circuit.allow()
    assert circuit.allow()  # closed never runs out


def test_opens_after_consecutive_failures(clock: FakeClock) -> None:
    circuit = breaker(clock)
    circuit.on_failure()
    circuit.on_failure()
    assert circuit.state == "closed"
    circuit.on_failure()
    assert circuit.state == "open"
    assert not circuit.allow()


def test_a_success_in_between_resets_the_run(clock: FakeClock) -> None:
    circuit = breaker(clock)
    for _ in range(3):
        circuit.on_failure()
        circuit.on_failure()
        circuit.on_success()
    assert circuit.state == "closed"
    assert circuit.snapshot()["consecutive_failures"] == 0


def test_opens_on_error_rate_once_min_requests_are_in(clock: FakeClock) -> None:
    circuit = breaker(clock, consecutive_failures=100)
    for _ in range(5):
        circuit.on_success()
        circuit.on_failure()
    # 10 requests, half of them failed: the rate reaches the threshold at the 10th.
    assert circuit.state == "open"


def test_stays_closed_below_min_requests(clock: FakeClock) -> None:
    circuit = breaker(clock, consecutive_failures=100)
    circuit.on_success()
    for _ in range(8):
        circuit.on_failure()  # 8 of 9 failed, but 9 < min_requests
    assert circuit.state == "closed"


def test_stays_closed_below_the_error_rate(clock: FakeClock) -> None:
    circuit = breaker(clock, consecutive_failures=100)
    for _ in range(20):
        circuit.on_success()
        circuit.on_success()
        circuit.on_failure()
    assert circuit.state == "closed"
    assert circuit.snapshot()["window_requests"] == 60
    assert circuit.snapshot()["window_errors"] == 20


def test_the_error_rate_window_forgets_old_requests(clock: FakeClock) -> None:
    circuit = breaker(clock, consecutive_failures=100)
    for _ in range(9):
        circuit.on_failure()
    clock.advance(61)
    circuit.on_failure()  # the nine earlier failures are outside the window
    assert circuit.state == "closed"
    assert circuit.snapshot()["window_requests"] == 1


def test_open_refuses_until_the_cooldown_has_passed(clock: FakeClock) -> None:
    circuit = opened(clock)
    clock.advance(29.9)
    assert circuit.state == "open"
    assert not circuit.allow()
    clock.advance(0.1)
    assert circuit.state == "half_open"


def test_half_open_lets_exactly_the_configured_probes_through(clock: FakeClock) -> None:
    circuit = opened(clock, half_open_probes=2)
    clock.advance(30)
    assert circuit.allow()
    assert circuit.allow()
    assert not circuit.allow()
    assert circuit.state == "half_open"


def test_a_probe_success_closes_the_circuit(clock: FakeClock) -> None:
    circuit = opened(clock)
    clock.advance(30)
    assert circuit.allow()
    circuit.on_success()
    assert circuit.state == "closed"
    assert circuit.snapshot() == {
        "state": "closed",
        "consecutive_failures": 0,
        "opened_at_s_ago": None,
        "retry_in_s": None,
        "window_requests": 0,
        "window_errors": 0,
    }
    circuit.on_failure()
    circuit.on_failure()
    assert circuit.state == "closed"  # the run starts again from zero


def test_a_probe_failure_reopens_with_a_fresh_cooldown(clock: FakeClock) -> None:
    circuit = opened(clock)
    clock.advance(40)
    assert circuit.allow()
    circuit.on_failure()
    assert circuit.state == "open"
    assert not circuit.allow()
    assert circuit.snapshot()["retry_in_s"] == 30
    clock.advance(29)
    assert circuit.state == "open"
    clock.advance(1)
    assert circuit.state == "half_open"
    assert circuit.allow()


def test_release_frees_a_probe_slot(clock: FakeClock) -> None:
    circuit = opened(clock)
    clock.advance(30)
    assert circuit.allow()
    assert not circuit.allow()
    circuit.release()
    assert circuit.state == "half_open"
    assert circuit.allow()
    assert not circuit.allow()


def test_release_outside_half_open_changes_nothing(clock: FakeClock) -> None:
    circuit = breaker(clock)
    assert circuit.allow()
    circuit.release()
    assert circuit.state == "closed"
    circuit = opened(clock)
    circuit.release()
    clock.advance(30)
    circuit.release()  # no probe in flight: must not make room for an extra one
    assert circuit.allow()
    assert not circuit.allow()


def test_late_outcomes_while_open_change_nothing(clock: FakeClock) -> None:
    circuit = opened(clock)
    clock.advance(10)
    circuit.on_success()
    circuit.on_failure()
    assert circuit.state == "open"
    assert circuit.snapshot()["retry_in_s"] == 20  # the cooldown was not restarted


def test_snapshot_while_open_and_half_open(clock: FakeClock) -> None:
    circuit = opened(clock)
    clock.advance(12.5)
    assert circuit.snapshot() == {
        "state": "open",
        "consecutive_failures": 3,
        "opened_at_s_ago": 12.5,
        "retry_in_s": 17.5,
        "window_requests": 3,
        "window_errors": 3,
    }
    clock.advance(20)
    snapshot = circuit.snapshot()
    assert snapshot["state"] == "half_open"
    assert snapshot["opened_at_s_ago"] == 32.5
    assert snapshot["retry_in_s"] is None


def test_breakers_keep_one_circuit_per_deployment(clock: FakeClock) -> None:
    policy = BreakerConfig(consecutive_failures=1)
    breakers = Breakers(policy, clock)
    assert breakers.snapshot() == {}
    first = breakers.get("openai/gpt-4o-mini")
    assert first is breakers.get("openai/gpt-4o-mini")
    assert first.policy is policy
    first.on_failure()
    assert breakers.get("groq/llama-3.1-8b").allow()
    snapshot = breakers.snapshot()
    assert snapshot["openai/gpt-4o-mini"]["state"] == "open"
    assert snapshot["groq/llama-3.1-8b"]["state"] == "closed"
