"""Per-key limits on the request path: rpm, tpm, parallel requests and a USD budget.

Before the upstream call a request is *admitted*: one request counted against rpm, its
estimated tokens against tpm, a concurrency slot taken, and its *maximum* estimated cost
reserved from the budget. After the call the ticket is *settled*: tpm corrected to the
tokens actually used, the slot freed, the reservation replaced by the actual cost. The
counters live in a `State` (memory, or Redis shared by every replica), and each step is
atomic there, so limits hold across replicas and concurrent requests cannot overspend a
budget by more than the amount by which one request's cost exceeds its estimate.

A refusal is a 429 with `Retry-After` and OpenAI's `x-ratelimit-*` headers (budget: code
`budget_exceeded`). Counters a refused request had already taken are given back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from crossroads.counters.base import (
    Admission,
    BudgetUsage,
    Refusal,
    Reservation,
    State,
    nanos_to_usd,
    usd_to_nanos,
)
from crossroads.protocol.errors import GatewayError

__all__ = ["KeyLimits", "LimitedKey", "Ticket", "budget_period_end", "budget_period_start"]

WINDOW_S = 60.0
# A slot is held at most this long beyond the request's own deadline if a replica dies.
LEASE_MARGIN_S = 60.0


class LimitedKey(Protocol):
    """What enforcement reads from a virtual key."""

    @property
    def id(self) -> str: ...
    @property
    def rpm_limit(self) -> int | None: ...
    @property
    def tpm_limit(self) -> int | None: ...
    @property
    def max_parallel_requests(self) -> int | None: ...
    @property
    def max_budget(self) -> float | None: ...
    @property
    def budget_period(self) -> str | None: ...


def budget_period_start(period: str | None, now: datetime | None = None) -> datetime | None:
    """The start (UTC) of the budget period containing `now`; None for a budget that never
    resets. Days start at midnight UTC, weeks on Monday, months on the 1st."""
    if period is None:
        return None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds until it is settled."""

    key: LimitedKey
    rpm: Admission | None = None
    tpm: Admission | None = None
    slot: Admission | None = None
    reservation: Reservation | None = None
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


class KeyLimits:
    def __init__(self, state: State, *, lease_s: float) -> None:
        self._state = state
        self._lease_s = lease_s + LEASE_MARGIN_S

    async def admit(self, key: LimitedKey, *, tokens: int, cost: float) -> Ticket:
        """Count the request in, or raise a 429 after giving back what it took."""
        ticket = Ticket(key)
        try:
            await self._admit(ticket, tokens, cost)
        except BaseException:
            await self.settle(ticket, tokens=None, cost=None)
            raise
        return ticket

    async def _admit(self, ticket: Ticket, tokens: int, cost: float) -> None:
        key, state = ticket.key, self._state
        if key.rpm_limit is not None:
            ticket.rpm = await state.hit(f"rpm:{key.id}", limit=key.rpm_limit, window_s=WINDOW_S)
            _headers(ticket.headers, "requests", ticket.rpm)
            if not ticket.rpm.allowed:
                admission, ticket.rpm = ticket.rpm, None
                raise _limited(
                    ticket, admission, "requests per minute", key.rpm_limit, "rpm_limit_exceeded"
                )
        if key.tpm_limit is not None:
            ticket.tpm = await state.hit(
                f"tpm:{key.id}", limit=key.tpm_limit, cost=max(tokens, 1), window_s=WINDOW_S
            )
            _headers(ticket.headers, "tokens", ticket.tpm)
            if not ticket.tpm.allowed:
                admission, ticket.tpm = ticket.tpm, None
                if admission.retry_after_s is None:
                    raise GatewayError(
                        429,
                        f"This request may use about {tokens} tokens, more than this key's "
                        f"limit of {key.tpm_limit} tokens per minute: lower max_tokens or "
                        "shorten the prompt.",
                        type="rate_limit_error",
                        code="tpm_limit_exceeded",
                        headers=ticket.headers,
                    )
                raise _limited(
                    ticket, admission, "tokens per minute", key.tpm_limit, "tpm_limit_exceeded"
                )
        if key.max_parallel_requests is not None:
            ticket.slot = await state.acquire(
                f"parallel:{key.id}", limit=key.max_parallel_requests, lease_s=self._lease_s
            )
            if not ticket.slot.allowed:
                ticket.slot = None
                ticket.headers["Retry-After"] = "1"
                raise GatewayError(
                    429,
                    f"This key already has {key.max_parallel_requests} requests in progress "
                    "(max_parallel_requests); retry when one finishes.",
                    type="rate_limit_error",
                    code="parallel_limit_exceeded",
                    headers=ticket.headers,
                )
        if key.max_budget is not None:
            period = budget_period_start(key.budget_period)
            held = await state.reserve(
                f"budget:{key.id}",
                usd_to_nanos(cost),
                limit=usd_to_nanos(key.max_budget),
                period_start=period,
            )
            if isinstance(held, Refusal):
                raise _over_budget(ticket, held, key.budget_period)
            ticket.reservation = held

    async def budget_held(self, key: LimitedKey) -> BudgetUsage:
        """What `key`'s budget counter holds now, in nano-dollars: settled spend and the
        reservations of requests in flight (zero once every request has settled)."""
        return await self._state.budget_usage(
            f"budget:{key.id}", period_start=budget_period_start(key.budget_period)
        )

    async def restore(self, key: LimitedKey, spent: float, period: datetime | None) -> None:
        """Raise the budget counter to `spent` USD (from the durable log) if it is lower."""
        await self._state.restore_spent(
            f"budget:{key.id}", usd_to_nanos(spent), period_start=period
        )

    async def settle(self, ticket: Ticket, *, tokens: int | None, cost: float | None) -> None:
        """Replace estimates with what the request used; free its slot. Idempotent."""
        if ticket.settled:
            return
        ticket.settled = True
        key, state = ticket.key, self._state
        if ticket.tpm is not None and ticket.tpm.token is not None:
            await state.adjust(f"tpm:{key.id}", ticket.tpm.token, max(tokens or 0, 0))
        if ticket.slot is not None and ticket.slot.token is not None:
            await state.release(f"parallel:{key.id}", ticket.slot.token)
        if ticket.reservation is not None:
            if cost:
                await state.settle(ticket.reservation, usd_to_nanos(cost))
            else:
                await state.cancel(ticket.reservation)


def _headers(headers: dict[str, str], kind: str, admission: Admission) -> None:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`."""
    headers[f"x-ratelimit-limit-{kind}"] = str(admission.limit)
    headers[f"x-ratelimit-remaining-{kind}"] = str(max(admission.remaining, 0))
    headers[f"x-ratelimit-reset-{kind}"] = f"{admission.reset_s:.3f}s"


def _limited(
    ticket: Ticket, admission: Admission, what: str, limit: int, code: str
) -> GatewayError:
    retry = max(1, math.ceil(admission.retry_after_s or admission.reset_s or 1))
    ticket.headers["Retry-After"] = str(retry)
    return GatewayError(
        429,
        f"Rate limit reached for this key: {limit} {what}. Retry after {retry}s.",
        type="rate_limit_error",
        code=code,
        headers=ticket.headers,
    )


def budget_period_end(period: str | None, now: datetime | None = None) -> datetime | None:
    """When the budget period containing `now` ends (the next one starts); None for a
    budget that never resets."""
    start = budget_period_start(period, now)
    if start is None:
        return None
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(weeks=1)
    return (start + timedelta(days=32)).replace(day=1)


def _budget_retry_after(refusal: Refusal, period: str | None) -> str | None:
    """Seconds until the request could fit: soon, when requests in flight hold the budget it
    needs (their reservations settle at their actual, usually lower, cost); else when the
    period resets. A lifetime budget that is spent has no such moment: no header."""
    if refusal.spent + refusal.amount <= refusal.limit:
        return "1"
    end = budget_period_end(period)
    if end is None:
        return None
    return str(max(1, math.ceil((end - datetime.now(UTC)).total_seconds())))


def _over_budget(ticket: Ticket, refusal: Refusal, period: str | None) -> GatewayError:
    spent = nanos_to_usd(refusal.spent + refusal.reserved)
    limit = nanos_to_usd(refusal.limit)
    needed = nanos_to_usd(refusal.amount)
    when = f" this {period.removesuffix('ly').replace('dai', 'day')}" if period else ""
    if (retry := _budget_retry_after(refusal, period)) is not None:
        ticket.headers["Retry-After"] = retry
    return GatewayError(
        429,
        f"Budget exceeded for this key: ${spent:.6f} of ${limit:.6f} used or reserved{when}, "
        f"and this request may cost up to ${needed:.6f}. Lower max_tokens, or raise the "
        "key's max_budget.",
        type="rate_limit_error",
        code="budget_exceeded",
        headers=ticket.headers,
    )
