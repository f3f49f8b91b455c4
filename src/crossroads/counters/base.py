"""The `State` protocol every counter backend implements, and the values it returns.

Three kinds of counter, each keyed by an opaque string the caller chooses (say
`rpm:<key id>`, `tpm:<key id>`, `parallel:<key id>`, `budget:<key id>`):

- a **sliding window** (`hit`, `adjust`) for requests and tokens per minute;
- **leases** (`acquire`, `release`) for requests in flight;
- a **budget** (`reserve`, `settle`, `cancel`, `budget_usage`, `restore_spent`) for money.

The one design decision: every check-and-update is a single atomic step on the backend (one
Lua script on Redis, one uninterrupted call on the event loop in memory), so the check and
the write can never be split by another request or another replica. Amounts of money are
integer nano-dollars (`usd_to_nanos`), never floats, so sums are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = [
    "NANOS_PER_USD",
    "PERIOD_RETENTION_S",
    "RESERVATION_TTL_S",
    "Admission",
    "BudgetUsage",
    "Refusal",
    "Reservation",
    "State",
    "StateError",
    "nanos_to_usd",
    "usd_to_nanos",
]

NANOS_PER_USD = 1_000_000_000

# How long an unsettled reservation holds budget before it is presumed dead (its request's
# replica crashed): longer than the longest request the gateway lets run.
RESERVATION_TTL_S = 900.0

# How long a budget period's counters live after the period starts: longer than the longest
# period (a 31-day month), so a counter is never dropped while its period is current.
PERIOD_RETENTION_S = 40 * 86_400.0


def usd_to_nanos(usd: float) -> int:
    """US dollars as integer nano-dollars, rounded to the nearest; the unit of every amount.

    Nano rather than micro: a single token of a cheap model costs well under a micro-dollar.
    Redis's Lua sums exactly up to 2**53 nano-dollars, about $9 million per counter.
    """
    if not math.isfinite(usd):
        raise ValueError(f"amount must be finite, got {usd!r}")
    return round(usd * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> float:
    """Integer nano-dollars as US dollars."""
    return nanos / NANOS_PER_USD


class StateError(Exception):
    """The shared state could not be read or written (e.g. Redis is unreachable).

    The caller decides whether to fail open (serve without the limit) or closed (refuse).
    """


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict of `hit` (sliding window) or `acquire` (leases).

    `token` identifies what was recorded: pass it to `adjust` (a hit) or `release` (a lease).
    It is None when the request was refused, since nothing was recorded.

    For a window: `remaining` is `limit` minus the cost in the window (after this hit when
    admitted), never below 0; `reset_s` is the time until everything now in the window has
    expired (OpenAI's `x-ratelimit-reset-*`); `retry_after_s` is 0 when admitted and, when
    refused, the time until enough has expired for this cost to fit (`Retry-After`), or None
    when it never will because `cost > limit`.

    For leases: `remaining` is the number of free slots (after this one when admitted);
    `reset_s` is the time until the earliest held lease expires, an upper bound on when a
    slot frees up (0 when none is held); `retry_after_s` is 0 when admitted and None when
    refused, because slots free up when requests finish, not at a time anyone knows.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float | None
    token: str | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Budget held for one request until it is settled, cancelled or expires."""

    key: str
    token: str
    amount: int  # nano-dollars
    period_start: datetime | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """`reserve` said no: `spent + reserved + amount` would exceed `limit` (nano-dollars)."""

    key: str
    amount: int
    limit: int
    spent: int
    reserved: int


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget counter in nano-dollars: settled spend and live reservations."""

    spent: int
    reserved: int


class State(Protocol):
    """Shared counters for rate limits, concurrency limits and budgets.

    Every method is one atomic step, safe under any number of concurrent callers and
    replicas sharing the backend. Backends raise `StateError` when they cannot answer.
    """

    async def hit(self, key: str, *, limit: int, cost: int = 1, window_s: float) -> Admission:
        """Record `cost` in the sliding window `key` if it fits, else refuse and record nothing.

        Admits when the cost recorded in the last `window_s` seconds plus `cost` is at most
        `limit`. The window is exact: each admitted hit is kept with its time and cost and
        leaves the window exactly `window_s` seconds later. Times are the backend's clock
        (Redis: the server's, so replicas agree). `limit` and `window_s` are not stored: a
        changed limit applies from the next call.
        """
        ...

    async def adjust(self, key: str, token: str, cost: int) -> bool:
        """Set the cost of an admitted hit to `cost`, keeping its time (reserve-then-settle).

        For tokens per minute: `hit` with the estimate before the upstream call, `adjust`
        with the actual count after. The window may go over `limit` when the actual exceeds
        the estimate; later hits are refused until it drains. False (and no change) when the
        hit has already left the window.
        """
        ...

    async def acquire(self, key: str, *, limit: int, lease_s: float) -> Admission:
        """Take one of `limit` slots of `key` for at most `lease_s` seconds, or refuse.

        Leases past their expiry are dropped first, so a replica that crashed while holding
        slots frees them after `lease_s`: make it longer than the longest request.
        """
        ...

    async def release(self, key: str, token: str) -> bool:
        """Give back the slot `token`; False when it was not held (released or expired)."""
        ...

    async def reserve(
        self,
        key: str,
        amount: int,
        *,
        limit: int,
        period_start: datetime | None = None,
        ttl_s: float = RESERVATION_TTL_S,
    ) -> Reservation | Refusal:
        """Hold `amount` nano-dollars of budget `key` if `spent + reserved + amount <= limit`.

        Counters are per period: `period_start` (timezone-aware; None for a budget that never
        resets) names the period, so a new period starts at zero. A period's counters are
        dropped `PERIOD_RETENTION_S` after it starts. A reservation not settled or cancelled
        within `ttl_s` seconds expires and stops holding budget.

        Since every admitted reservation fits, concurrent requests never overspend when each
        settles at most what it reserved; the overspend is at most the sum of
        `actual - amount` over requests that cost more than they reserved.
        """
        ...

    async def settle(self, reservation: Reservation, actual: int) -> BudgetUsage:
        """Drop the reservation and add `actual` nano-dollars to the period's spend.

        The actual cost is added even when the reservation has expired: the money was spent.
        Call it once per reservation.
        """
        ...

    async def cancel(self, reservation: Reservation) -> bool:
        """Drop a reservation whose request cost nothing; False when it was no longer held."""
        ...

    async def budget_usage(self, key: str, *, period_start: datetime | None = None) -> BudgetUsage:
        """The period's settled spend and live (unexpired) reservations."""
        ...

    async def restore_spent(
        self, key: str, at_least: int, *, period_start: datetime | None = None
    ) -> BudgetUsage:
        """Raise the period's spend to `at_least` if it is lower; otherwise change nothing.

        How spend is rebuilt from the durable usage log after the counters were lost (the
        memory backend restarted, Redis lost its data). The log lags the counters, so
        `at_least` from it never raises a live counter: safe to call whenever a key is loaded.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the state is not used afterwards."""
        ...


def check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")


def period_epoch(period_start: datetime | None) -> int | None:
    """A period's start as whole epoch seconds, the part of its counters' key that names it."""
    if period_start is None:
        return None
    if period_start.tzinfo is None:
        raise ValueError("period_start must be timezone-aware")
    return math.floor(period_start.timestamp())
