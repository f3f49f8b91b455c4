"""Shared counters: sliding windows, leases and budgets, on both backends.

Every behaviour test runs on `MemoryState` and, marked `redis`, on the local Redis server
(keys under a fresh prefix per test, deleted afterwards). "Replicas" are separate Redis
clients sharing the server; in memory they are one state, since memory is one process.
Windows, leases and reservations are made short (a few tenths of a second) and the tests
sleep through them: Redis keeps time by its own clock, so a fake clock cannot drive it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from crossroads.counters import (
    PERIOD_RETENTION_S,
    MemoryState,
    RedisState,
    Refusal,
    Reservation,
    State,
    StateError,
    build_state,
    nanos_to_usd,
    usd_to_nanos,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
CENT = usd_to_nanos(0.01)

StateFactory = Callable[..., State]
T = TypeVar("T")


async def _redis_admin() -> Redis:
    """A client for set-up and clean-up; skips (fails under CI) when Redis is unreachable."""
    admin: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await admin.ping()
    except (RedisError, OSError) as error:
        await admin.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable (set CI to make this fail)")
    return admin


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_state(request: pytest.FixtureRequest) -> AsyncIterator[StateFactory]:
    """Makes states on one backend; on Redis they share a prefix, so they see each other."""
    made: list[State] = []
    if request.param == "memory":

        def make_memory(period_retention_s: float = PERIOD_RETENTION_S) -> State:
            made.append(MemoryState(period_retention_s=period_retention_s))
            return made[-1]

        yield make_memory
        for state in made:
            await state.aclose()
        return

    admin = await _redis_admin()
    prefix = f"crossroads-test:{uuid.uuid4().hex}:"

    def make_redis(period_retention_s: float = PERIOD_RETENTION_S) -> State:
        made.append(
            RedisState.from_url(REDIS_URL, prefix=prefix, period_retention_s=period_retention_s)
        )
        return made[-1]

    try:
        yield make_redis
    finally:
        for state in made:
            await state.aclose()
        stale = [key async for key in admin.scan_iter(match=f"{prefix}*")]
        if stale:
            await admin.delete(*stale)
        await admin.aclose()


@pytest.fixture
def state(make_state: StateFactory) -> State:
    return make_state()


@pytest.fixture
def replicas(make_state: StateFactory, state: State) -> list[State]:
    """Three gateway replicas' views of the counters: three clients on Redis."""
    if isinstance(state, MemoryState):
        return [state] * 3
    return [state, make_state(), make_state()]


def _spread(
    replicas: list[State], count: int, call: Callable[[State], Awaitable[T]]
) -> list[Awaitable[T]]:
    """`count` calls, taking the replicas in turn."""
    return [call(replicas[i % len(replicas)]) for i in range(count)]


def _period(days_from_today: int = 0) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days_from_today)


# Sliding window


async def test_window_admits_exactly_the_limit_then_refuses(state: State) -> None:
    admitted = [await state.hit("rpm:k", limit=5, window_s=10) for _ in range(5)]
    assert all(a.allowed and a.token for a in admitted)
    assert [a.remaining for a in admitted] == [4, 3, 2, 1, 0]
    assert admitted[0].retry_after_s == 0
    assert admitted[-1].reset_s == pytest.approx(10, abs=0.01)

    refused = await state.hit("rpm:k", limit=5, window_s=10)
    assert not refused.allowed
    assert refused.token is None
    assert refused.remaining == 0
    assert refused.retry_after_s is not None
    assert 9 < refused.retry_after_s <= 10  # when the first hit leaves the window
    assert refused.retry_after_s <= refused.reset_s <= 10


async def test_window_slides(state: State) -> None:
    first = await state.hit("rpm:k", limit=2, window_s=0.4)
    await asyncio.sleep(0.2)
    assert first.allowed
    assert (await state.hit("rpm:k", limit=2, window_s=0.4)).allowed

    refused = await state.hit("rpm:k", limit=2, window_s=0.4)
    assert not refused.allowed
    assert refused.retry_after_s is not None
    assert 0 < refused.retry_after_s <= 0.2 + 0.02
    assert refused.reset_s > refused.retry_after_s  # the second hit leaves later

    await asyncio.sleep(refused.retry_after_s + 0.02)
    assert (await state.hit("rpm:k", limit=2, window_s=0.4)).allowed
    assert not (await state.hit("rpm:k", limit=2, window_s=0.4)).allowed


async def test_window_retry_after_waits_for_enough_cost_to_leave(state: State) -> None:
    assert (await state.hit("tpm:k", limit=100, cost=30, window_s=10)).allowed
    await asyncio.sleep(0.1)
    assert (await state.hit("tpm:k", limit=100, cost=60, window_s=10)).allowed
    # 90 used; 50 more needs 40 to leave: the 30 alone is not enough, the 60 too is.
    refused = await state.hit("tpm:k", limit=100, cost=50, window_s=10)
    assert not refused.allowed
    assert refused.remaining == 10
    assert refused.retry_after_s is not None
    assert 9.8 < refused.retry_after_s <= 10
    small = await state.hit("tpm:k", limit=100, cost=20, window_s=10)
    assert not small.allowed
    assert small.retry_after_s is not None
    assert 9.7 < small.retry_after_s < 9.95  # the 30 leaving is enough


async def test_window_never_admits_a_cost_above_the_limit(state: State) -> None:
    refused = await state.hit("tpm:k", limit=100, cost=101, window_s=10)
    assert not refused.allowed
    assert refused.retry_after_s is None
    assert refused.remaining == 100
    assert refused.reset_s == 0
    assert (await state.hit("tpm:k", limit=100, cost=100, window_s=10)).allowed


async def test_window_limits_are_separate_per_key(state: State) -> None:
    assert (await state.hit("rpm:a", limit=1, window_s=10)).allowed
    assert (await state.hit("rpm:b", limit=1, window_s=10)).allowed
    assert not (await state.hit("rpm:a", limit=1, window_s=10)).allowed


async def test_tokens_reserve_then_settle(state: State) -> None:
    estimate = await state.hit("tpm:k", limit=1000, cost=800, window_s=10)
    assert estimate.allowed
    assert estimate.token is not None
    assert not (await state.hit("tpm:k", limit=1000, cost=300, window_s=10)).allowed

    assert await state.adjust("tpm:k", estimate.token, 150)  # the actual count
    after = await state.hit("tpm:k", limit=1000, cost=300, window_s=10)
    assert after.allowed
    assert after.remaining == 1000 - 150 - 300

    # An actual count above the estimate may take the window over its limit.
    assert await state.adjust("tpm:k", estimate.token, 2000)
    over = await state.hit("tpm:k", limit=1000, cost=1, window_s=10)
    assert not over.allowed
    assert over.remaining == 0
    assert over.retry_after_s is not None
    assert 9 < over.retry_after_s <= 10


async def test_adjust_after_the_hit_left_the_window_changes_nothing(state: State) -> None:
    old = await state.hit("tpm:k", limit=100, cost=10, window_s=0.2)
    assert old.token is not None
    await asyncio.sleep(0.3)
    assert not await state.adjust("tpm:k", old.token, 90)
    assert not await state.adjust("tpm:k", "no-such-token", 90)
    fresh = await state.hit("tpm:k", limit=100, cost=10, window_s=0.2)
    assert fresh.remaining == 90


async def test_window_holds_across_replicas(replicas: list[State]) -> None:
    hits = await asyncio.gather(
        *_spread(replicas, 200, lambda s: s.hit("rpm:shared", limit=60, window_s=60))
    )
    assert sum(h.allowed for h in hits) == 60
    assert sorted(h.remaining for h in hits if h.allowed) == list(range(60))


# Leases


async def test_concurrency_limit_and_release(state: State) -> None:
    first = await state.acquire("parallel:k", limit=2, lease_s=30)
    second = await state.acquire("parallel:k", limit=2, lease_s=30)
    assert first.allowed and second.allowed
    assert (first.remaining, second.remaining) == (1, 0)

    refused = await state.acquire("parallel:k", limit=2, lease_s=30)
    assert not refused.allowed
    assert refused.token is None
    assert refused.retry_after_s is None
    assert 29 < refused.reset_s <= 30  # the earliest lease's expiry bounds the wait

    assert first.token is not None
    assert await state.release("parallel:k", first.token)
    assert not await state.release("parallel:k", first.token)
    assert (await state.acquire("parallel:k", limit=2, lease_s=30)).allowed
    assert not (await state.acquire("parallel:k", limit=2, lease_s=30)).allowed


async def test_expired_leases_free_their_slots(state: State) -> None:
    held = await state.acquire("parallel:k", limit=1, lease_s=0.2)
    assert held.allowed
    assert not (await state.acquire("parallel:k", limit=1, lease_s=0.2)).allowed
    await asyncio.sleep(0.3)  # the holder "crashed" without releasing
    assert (await state.acquire("parallel:k", limit=1, lease_s=0.2)).allowed
    assert held.token is not None
    assert not await state.release("parallel:k", held.token)


async def test_concurrency_holds_across_replicas(replicas: list[State]) -> None:
    leases = await asyncio.gather(
        *_spread(replicas, 100, lambda s: s.acquire("parallel:shared", limit=7, lease_s=30))
    )
    assert sum(lease.allowed for lease in leases) == 7


# Budgets


async def test_concurrent_reservations_never_overspend(state: State) -> None:
    results = await asyncio.gather(
        *(state.reserve("budget:k", CENT, limit=usd_to_nanos(0.50)) for _ in range(200))
    )
    assert sum(isinstance(r, Reservation) for r in results) == 50
    usage = await state.budget_usage("budget:k")
    assert (usage.spent, usage.reserved) == (0, usd_to_nanos(0.50))
    refusal = next(r for r in results if isinstance(r, Refusal))
    assert refusal.limit == usd_to_nanos(0.50)
    assert refusal.amount == CENT


async def test_reservations_hold_across_replicas(replicas: list[State]) -> None:
    period = _period()
    results = await asyncio.gather(
        *_spread(
            replicas,
            200,
            lambda s: s.reserve(
                "budget:shared", CENT, limit=usd_to_nanos(0.50), period_start=period
            ),
        )
    )
    reservations = [r for r in results if isinstance(r, Reservation)]
    assert len(reservations) == 50
    # Settling the full estimate everywhere spends the limit exactly, and no more.
    await asyncio.gather(*(replicas[i % 3].settle(r, r.amount) for i, r in enumerate(reservations)))
    usage = await replicas[1].budget_usage("budget:shared", period_start=period)
    assert (usage.spent, usage.reserved) == (usd_to_nanos(0.50), 0)
    assert isinstance(
        await replicas[2].reserve(
            "budget:shared", 1, limit=usd_to_nanos(0.50), period_start=period
        ),
        Refusal,
    )


async def test_settling_below_the_reservation_frees_the_difference(state: State) -> None:
    limit = usd_to_nanos(0.05)
    held = await state.reserve("budget:k", usd_to_nanos(0.03), limit=limit)
    assert isinstance(held, Reservation)
    refused = await state.reserve("budget:k", usd_to_nanos(0.03), limit=limit)
    assert isinstance(refused, Refusal)
    assert (refused.spent, refused.reserved) == (0, usd_to_nanos(0.03))

    usage = await state.settle(held, usd_to_nanos(0.01))
    assert (usage.spent, usage.reserved) == (usd_to_nanos(0.01), 0)
    assert isinstance(await state.reserve("budget:k", usd_to_nanos(0.03), limit=limit), Reservation)
    assert isinstance(await state.reserve("budget:k", usd_to_nanos(0.02), limit=limit), Refusal)
    assert isinstance(await state.reserve("budget:k", usd_to_nanos(0.01), limit=limit), Reservation)


async def test_settling_above_the_reservation_counts_the_actual_cost(state: State) -> None:
    held = await state.reserve("budget:k", CENT, limit=3 * CENT)
    assert isinstance(held, Reservation)
    usage = await state.settle(held, 4 * CENT)
    assert (usage.spent, usage.reserved) == (4 * CENT, 0)
    assert isinstance(await state.reserve("budget:k", 0, limit=3 * CENT), Refusal)


async def test_cancel_returns_the_reservation(state: State) -> None:
    held = await state.reserve("budget:k", 2 * CENT, limit=2 * CENT)
    assert isinstance(held, Reservation)
    assert await state.cancel(held)
    assert not await state.cancel(held)
    usage = await state.budget_usage("budget:k")
    assert (usage.spent, usage.reserved) == (0, 0)
    assert isinstance(await state.reserve("budget:k", 2 * CENT, limit=2 * CENT), Reservation)


async def test_a_new_period_starts_at_zero(state: State) -> None:
    today, tomorrow = _period(0), _period(1)
    held = await state.reserve("budget:k", 5 * CENT, limit=5 * CENT, period_start=today)
    assert isinstance(held, Reservation)
    await state.settle(held, 5 * CENT)
    assert isinstance(
        await state.reserve("budget:k", CENT, limit=5 * CENT, period_start=today), Refusal
    )

    fresh = await state.reserve("budget:k", 5 * CENT, limit=5 * CENT, period_start=tomorrow)
    assert isinstance(fresh, Reservation)
    assert (await state.budget_usage("budget:k", period_start=today)).spent == 5 * CENT
    tomorrow_usage = await state.budget_usage("budget:k", period_start=tomorrow)
    assert (tomorrow_usage.spent, tomorrow_usage.reserved) == (0, 5 * CENT)
    assert (await state.budget_usage("budget:k")).spent == 0  # the never-resetting budget


async def test_stale_reservations_expire(state: State) -> None:
    stale = await state.reserve("budget:k", 3 * CENT, limit=4 * CENT, ttl_s=0.2)
    assert isinstance(stale, Reservation)
    assert isinstance(await state.reserve("budget:k", 3 * CENT, limit=4 * CENT), Refusal)
    await asyncio.sleep(0.3)  # its replica "crashed" before settling
    assert (await state.budget_usage("budget:k")).reserved == 0
    fresh = await state.reserve("budget:k", 3 * CENT, limit=4 * CENT)
    assert isinstance(fresh, Reservation)

    # A late settle still counts the money, and does not free the live reservation.
    usage = await state.settle(stale, 2 * CENT)
    assert (usage.spent, usage.reserved) == (2 * CENT, 3 * CENT)
    assert not await state.cancel(stale)


async def test_a_period_is_dropped_after_its_retention(make_state: StateFactory) -> None:
    state = make_state(period_retention_s=3600)
    # A period that started almost an hour ago: its counters go in one to two seconds.
    expiry = math.floor(time.time()) + 2
    start = datetime.fromtimestamp(expiry - 3600, UTC)
    held = await state.reserve("budget:k", CENT, limit=CENT, period_start=start)
    assert isinstance(held, Reservation)
    await state.settle(held, CENT)
    assert (await state.budget_usage("budget:k", period_start=start)).spent == CENT
    await asyncio.sleep(expiry + 0.1 - time.time())
    usage = await state.budget_usage("budget:k", period_start=start)
    assert (usage.spent, usage.reserved) == (0, 0)


async def test_restore_spent_only_raises(state: State) -> None:
    period = _period()
    restored = await state.restore_spent("budget:k", 3 * CENT, period_start=period)
    assert (restored.spent, restored.reserved) == (3 * CENT, 0)
    assert (await state.restore_spent("budget:k", CENT, period_start=period)).spent == 3 * CENT
    assert isinstance(
        await state.reserve("budget:k", 3 * CENT, limit=5 * CENT, period_start=period), Refusal
    )


async def test_bad_arguments_are_refused_before_anything_is_stored(state: State) -> None:
    with pytest.raises(ValueError, match="cost"):
        await state.hit("rpm:k", limit=1, cost=-1, window_s=1)
    with pytest.raises(ValueError, match="window_s"):
        await state.hit("rpm:k", limit=1, window_s=0)
    with pytest.raises(ValueError, match="lease_s"):
        await state.acquire("parallel:k", limit=1, lease_s=math.nan)
    with pytest.raises(ValueError, match="amount"):
        await state.reserve("budget:k", -1, limit=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        await state.reserve("budget:k", 1, limit=1, period_start=datetime(2025, 1, 1))
    assert (await state.hit("rpm:k", limit=1, window_s=1)).remaining == 0
    assert await state.budget_usage("budget:k") == await state.budget_usage("budget:other")


# Units, the factory, and what only one backend has


def test_amounts_are_integer_nanodollars() -> None:
    assert usd_to_nanos(0.01) == 10_000_000
    assert usd_to_nanos(0.1 + 0.2) == 300_000_000
    assert usd_to_nanos(2.5e-7) == 250  # a token of a cheap model
    assert nanos_to_usd(usd_to_nanos(0.50)) == 0.50
    with pytest.raises(ValueError, match="finite"):
        usd_to_nanos(math.inf)


async def test_build_state_picks_the_backend_by_url() -> None:
    assert isinstance(build_state(None), MemoryState)
    assert isinstance(build_state("memory://"), MemoryState)
    redis_state = build_state("redis://127.0.0.1:6379/0")
    assert isinstance(redis_state, RedisState)
    await redis_state.aclose()
    with pytest.raises(ValueError, match="postgresql://") as error:
        build_state("postgresql://user:hunter2@127.0.0.1/db")
    assert "hunter2" not in str(error.value)
    with pytest.raises(ValueError, match=r"\(none\)"):
        build_state("127.0.0.1:6379")


async def test_unreachable_redis_raises_state_error() -> None:
    state = RedisState.from_url("redis://127.0.0.1:9/0", timeout_s=0.5)
    try:
        with pytest.raises(StateError, match="Redis"):
            await state.hit("rpm:k", limit=1, window_s=1)
        with pytest.raises(StateError, match="Redis"):
            await state.release("parallel:k", "token")
    finally:
        await state.aclose()


async def test_memory_window_is_exact_under_a_fake_clock() -> None:
    now = [1000.0]
    state = MemoryState(clock=lambda: now[0])
    assert (await state.hit("rpm:k", limit=2, window_s=60)).allowed
    now[0] += 15
    assert (await state.hit("rpm:k", limit=2, window_s=60)).allowed
    now[0] += 15
    refused = await state.hit("rpm:k", limit=2, window_s=60)
    assert (refused.retry_after_s, refused.reset_s) == (30.0, 45.0)
    now[0] += 30  # the first hit is exactly 60 s old: out of the window
    assert (await state.hit("rpm:k", limit=2, window_s=60)).allowed


async def test_memory_sweeps_counters_nobody_uses() -> None:
    now = [1000.0]
    state = MemoryState(clock=lambda: now[0])
    await state.hit("rpm:k", limit=1, window_s=1)
    await state.acquire("parallel:k", limit=1, lease_s=1)
    await state.reserve("budget:k", 1, limit=1, ttl_s=1, period_start=_period())
    lifetime = await state.reserve("budget:forever", 1, limit=1, ttl_s=1)
    assert isinstance(lifetime, Reservation)
    await state.settle(lifetime, 1)
    now[0] = time.time() + 41 * 86_400  # past every expiry, and the period's retention
    await state.budget_usage("budget:other")
    assert (state._windows, state._leases) == ({}, {})
    assert list(state._budgets) == [("budget:forever", None)]


@pytest.mark.redis
async def test_redis_keys_expire_on_their_own() -> None:
    admin = await _redis_admin()
    prefix = f"crossroads-test:{uuid.uuid4().hex}:"
    state = RedisState.from_url(REDIS_URL, prefix=prefix)
    try:
        await state.hit("rpm:k", limit=5, window_s=10)
        await state.acquire("parallel:k", limit=5, lease_s=30)
        held = await state.reserve("budget:k", 1, limit=5, period_start=_period())
        lifetime = await state.reserve("budget:forever", 1, limit=5)
        assert isinstance(held, Reservation)
        assert isinstance(lifetime, Reservation)
        ttl_ms = {
            key.decode(): await admin.pttl(key) async for key in admin.scan_iter(f"{prefix}*")
        }
        assert 9_000 < ttl_ms[prefix + "{rpm:k}:win"] <= 10_001
        assert 9_000 < ttl_ms[prefix + "{rpm:k}:win:cost"] <= 10_001
        assert 29_000 < ttl_ms[prefix + "{parallel:k}:lease"] <= 30_001
        period_key = f"{prefix}{{budget:k}}:budget:{int(_period().timestamp())}"
        assert 39 * 86_400_000 < ttl_ms[period_key] <= 40 * 86_400_000
        assert 39 * 86_400_000 < ttl_ms[period_key + ":holds"] <= 40 * 86_400_000
        assert ttl_ms[prefix + "{budget:forever}:budget:all"] == -1  # never resets
    finally:
        await state.aclose()
        stale = [key async for key in admin.scan_iter(match=f"{prefix}*")]
        if stale:
            await admin.delete(*stale)
        await admin.aclose()
