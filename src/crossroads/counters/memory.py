"""`MemoryState`: the counters in this process, for a single gateway (the default).

It behaves exactly like `RedisState` — the same tests run against both — and is atomic for
the same reason in a different place: no method awaits anything, so each one runs on the
event loop from check to update without another request in between. Not thread-safe.

Expired entries leave lazily when their counter is next used; counters nobody uses any more
are swept from the maps once a minute, so memory follows the live keys, not every key seen.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from crossroads.counters.base import (
    PERIOD_RETENTION_S,
    RESERVATION_TTL_S,
    Admission,
    BudgetUsage,
    Refusal,
    Reservation,
    check_count,
    check_positive,
    period_epoch,
)

__all__ = ["MemoryState"]

_SWEEP_EVERY_S = 60.0


@dataclass(slots=True)
class _Window:
    hits: deque[tuple[float, str]] = field(default_factory=deque)  # (time, token), oldest first
    costs: dict[str, int] = field(default_factory=dict)
    used: int = 0
    expires_at: float = 0.0  # when the newest hit leaves: Redis drops the keys then

    def trim(self, cutoff: float) -> None:
        while self.hits and self.hits[0][0] <= cutoff:
            _, token = self.hits.popleft()
            self.used -= self.costs.pop(token)


@dataclass(slots=True)
class _Budget:
    expires_at: float | None  # None: a budget that never resets
    spent: int = 0
    reserved: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # token → (amount, expiry)

    def drop_expired(self, now: float) -> None:
        for token, (amount, expiry) in list(self.holds.items()):
            if expiry <= now:
                del self.holds[token]
                self.reserved -= amount

    def forget(self, token: str) -> bool:
        hold = self.holds.pop(token, None)
        if hold is None:
            return False
        self.reserved -= hold[0]
        return True


class MemoryState:
    """The `State` protocol in process memory; `clock` returns epoch seconds (injectable)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        period_retention_s: float = PERIOD_RETENTION_S,
    ) -> None:
        check_positive("period_retention_s", period_retention_s)
        self._clock = clock
        self._retention_s = period_retention_s
        self._windows: dict[str, _Window] = {}
        self._leases: dict[str, dict[str, float]] = {}  # key → token → expiry
        self._budgets: dict[tuple[str, int | None], _Budget] = {}
        self._next_sweep = clock() + _SWEEP_EVERY_S

    async def hit(self, key: str, *, limit: int, cost: int = 1, window_s: float) -> Admission:
        check_count("cost", cost)
        check_positive("window_s", window_s)
        now = self._now()
        window = self._window(key, now) or self._windows.setdefault(key, _Window())
        window.trim(now - window_s)
        if window.used + cost <= limit:
            token = secrets.token_hex(8)
            window.hits.append((now, token))
            window.costs[token] = cost
            window.used += cost
            window.expires_at = now + window_s
            return Admission(
                allowed=True,
                limit=limit,
                remaining=max(0, limit - window.used),
                reset_s=window_s,
                retry_after_s=0.0,
                token=token,
            )
        retry: float | None = None
        if cost <= limit:
            need, released = window.used + cost - limit, 0
            for at, token in window.hits:
                released += window.costs[token]
                if released >= need:
                    retry = at + window_s - now
                    break
        reset = window.hits[-1][0] + window_s - now if window.hits else 0.0
        return Admission(
            allowed=False,
            limit=limit,
            remaining=max(0, limit - window.used),
            reset_s=max(0.0, reset),
            retry_after_s=None if retry is None else max(0.0, retry),
            token=None,
        )

    async def adjust(self, key: str, token: str, cost: int) -> bool:
        check_count("cost", cost)
        window = self._window(key, self._now())
        if window is None or token not in window.costs:
            return False
        window.used += cost - window.costs[token]
        window.costs[token] = cost
        return True

    async def acquire(self, key: str, *, limit: int, lease_s: float) -> Admission:
        check_positive("lease_s", lease_s)
        now = self._now()
        leases = self._leases.setdefault(key, {})
        for held, expiry in list(leases.items()):
            if expiry <= now:
                del leases[held]
        token: str | None = None
        if len(leases) < limit:
            token = secrets.token_hex(8)
            leases[token] = now + lease_s
        reset = min(leases.values()) - now if leases else 0.0
        return Admission(
            allowed=token is not None,
            limit=limit,
            remaining=max(0, limit - len(leases)),
            reset_s=max(0.0, reset),
            retry_after_s=0.0 if token is not None else None,
            token=token,
        )

    async def release(self, key: str, token: str) -> bool:
        leases = self._leases.get(key)
        return leases is not None and leases.pop(token, None) is not None

    async def reserve(
        self,
        key: str,
        amount: int,
        *,
        limit: int,
        period_start: datetime | None = None,
        ttl_s: float = RESERVATION_TTL_S,
    ) -> Reservation | Refusal:
        check_count("amount", amount)
        check_positive("ttl_s", ttl_s)
        now = self._now()
        budget = self._budget(key, period_start, now)
        if budget.spent + budget.reserved + amount > limit:
            return Refusal(
                key=key, amount=amount, limit=limit, spent=budget.spent, reserved=budget.reserved
            )
        token = secrets.token_hex(8)
        budget.holds[token] = (amount, now + ttl_s)
        budget.reserved += amount
        return Reservation(key=key, token=token, amount=amount, period_start=period_start)

    async def settle(self, reservation: Reservation, actual: int) -> BudgetUsage:
        check_count("actual", actual)
        budget = self._budget(reservation.key, reservation.period_start, self._now())
        budget.forget(reservation.token)
        budget.spent += actual
        return self._usage_of(budget)

    async def cancel(self, reservation: Reservation) -> bool:
        budget = self._live_budget(reservation.key, reservation.period_start, self._now())
        return budget is not None and budget.forget(reservation.token)

    async def budget_usage(self, key: str, *, period_start: datetime | None = None) -> BudgetUsage:
        return self._usage_of(self._live_budget(key, period_start, self._now()))

    async def restore_spent(
        self, key: str, at_least: int, *, period_start: datetime | None = None
    ) -> BudgetUsage:
        check_count("at_least", at_least)
        budget = self._budget(key, period_start, self._now())
        budget.spent = max(budget.spent, at_least)
        return self._usage_of(budget)

    async def aclose(self) -> None:
        self._windows.clear()
        self._leases.clear()
        self._budgets.clear()

    def _now(self) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + _SWEEP_EVERY_S
        return now

    def _window(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        if window is not None and window.expires_at <= now:
            del self._windows[key]
            return None
        return window

    def _budget(self, key: str, period_start: datetime | None, now: float) -> _Budget:
        """The period's live counter: a fresh one when it never existed or has expired."""
        return self._live_budget(key, period_start, now) or self._budgets.setdefault(
            (key, period_epoch(period_start)), _Budget(self._expiry(period_start))
        )

    def _live_budget(self, key: str, period_start: datetime | None, now: float) -> _Budget | None:
        budget_key = (key, period_epoch(period_start))
        budget = self._budgets.get(budget_key)
        if budget is None:
            return None
        if budget.expires_at is not None and budget.expires_at <= now:
            del self._budgets[budget_key]
            return None
        budget.drop_expired(now)
        return budget

    def _expiry(self, period_start: datetime | None) -> float | None:
        start = period_epoch(period_start)
        return None if start is None else start + self._retention_s

    def _usage_of(self, budget: _Budget | None) -> BudgetUsage:
        if budget is None:
            return BudgetUsage(spent=0, reserved=0)
        return BudgetUsage(spent=budget.spent, reserved=budget.reserved)

    def _sweep(self, now: float) -> None:
        """Drop counters with nothing live left: what Redis's key expiry does for it."""
        for key, window in list(self._windows.items()):
            if window.expires_at <= now:
                del self._windows[key]
        for key, leases in list(self._leases.items()):
            if all(expiry <= now for expiry in leases.values()):
                del self._leases[key]
        for budget_key, budget in list(self._budgets.items()):
            if budget.expires_at is not None and budget.expires_at <= now:
                del self._budgets[budget_key]
