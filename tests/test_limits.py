"""Per-key limits: admission, refusal with headers, settlement, budget periods."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from crossroads.counters import MemoryState, nanos_to_usd
from crossroads.limits import KeyLimits, budget_period_start
from crossroads.protocol.errors import GatewayError


@dataclass
class Key:
    id: str = "key_1"
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    max_budget: float | None = None
    budget_period: str | None = None


def limits() -> tuple[KeyLimits, MemoryState]:
    state = MemoryState()
    return KeyLimits(state, lease_s=30), state


async def test_rpm_refuses_with_retry_after_and_openai_headers() -> None:
    key_limits, _ = limits()
    key = Key(rpm_limit=2)
    first = await key_limits.admit(key, tokens=10, cost=0.0)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    await key_limits.admit(key, tokens=10, cost=0.0)
    with pytest.raises(GatewayError) as caught:
        await key_limits.admit(key, tokens=10, cost=0.0)
    error = caught.value
    assert error.status == 429 and error.code == "rpm_limit_exceeded"
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


async def test_tpm_is_charged_the_estimate_then_the_actual() -> None:
    key_limits, _ = limits()
    key = Key(tpm_limit=100)
    ticket = await key_limits.admit(key, tokens=90, cost=0.0)
    await key_limits.settle(ticket, tokens=20, cost=0.0)  # used far less than estimated
    again = await key_limits.admit(key, tokens=70, cost=0.0)  # 20 + 70 fits
    assert again.headers["x-ratelimit-remaining-tokens"] == "10"
    with pytest.raises(GatewayError) as caught:
        await key_limits.admit(key, tokens=500, cost=0.0)  # can never fit
    assert caught.value.code == "tpm_limit_exceeded"
    assert "more than this key's limit" in caught.value.message


async def test_parallel_slots_are_freed_on_settle_and_on_refusal() -> None:
    key_limits, _ = limits()
    key = Key(max_parallel_requests=1, rpm_limit=100)
    held = await key_limits.admit(key, tokens=1, cost=0.0)
    with pytest.raises(GatewayError) as caught:
        await key_limits.admit(key, tokens=1, cost=0.0)
    assert caught.value.code == "parallel_limit_exceeded"
    await key_limits.settle(held, tokens=1, cost=0.0)
    await key_limits.settle(held, tokens=1, cost=0.0)  # idempotent
    await key_limits.admit(key, tokens=1, cost=0.0)


async def test_concurrent_requests_cannot_overspend_the_budget() -> None:
    key_limits, state = limits()
    key = Key(max_budget=0.50)

    async def one() -> bool:
        try:
            ticket = await key_limits.admit(key, tokens=100, cost=0.01)
        except GatewayError as exc:
            if exc.code != "budget_exceeded":
                raise
            return False
        await asyncio.sleep(0)
        await key_limits.settle(ticket, tokens=100, cost=0.008)
        return True

    admitted = sum(await asyncio.gather(*(one() for _ in range(200))))
    usage = await state.budget_usage("budget:key_1")
    assert nanos_to_usd(usage.spent) <= 0.50
    assert admitted >= 50
    assert usage.reserved == 0


async def test_a_refused_request_gives_back_what_it_took() -> None:
    key_limits, _ = limits()
    key = Key(rpm_limit=10, max_parallel_requests=5, max_budget=0.001)
    with pytest.raises(GatewayError) as caught:
        await key_limits.admit(key, tokens=1, cost=0.01)
    assert caught.value.code == "budget_exceeded"
    assert "$0.001000" in caught.value.message
    # The slot was released: five requests can still run at once.
    tickets = [await key_limits.admit(key, tokens=1, cost=0.0) for _ in range(5)]
    assert len(tickets) == 5


def test_budget_periods_start_at_utc_boundaries() -> None:
    now = datetime(2026, 11, 19, 15, 30, tzinfo=UTC)  # a Thursday
    assert budget_period_start(None, now) is None
    assert budget_period_start("daily", now) == datetime(2026, 11, 19, tzinfo=UTC)
    assert budget_period_start("weekly", now) == datetime(2026, 11, 16, tzinfo=UTC)
    assert budget_period_start("monthly", now) == datetime(2026, 11, 1, tzinfo=UTC)
