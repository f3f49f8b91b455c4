"""`RedisState`: the counters in Redis, shared by every gateway replica that uses the server.

Every multi-step update is a Lua script (`crossroads.counters.lua`) registered once per client
and run by its SHA (`EVALSHA`, reloaded transparently after a server restart), so each
check-and-update is one atomic round trip and times come from the server's clock.

Key layout, with the caller's key in a hash tag so that a counter's keys share one Redis
Cluster slot (`p` is the prefix, `k` the caller's key, `t` a period start in epoch seconds):

- `p{k}:win`, `p{k}:win:cost`: a sliding window (zset token → µs, hash token → cost);
- `p{k}:lease`: leases (zset token → expiry µs);
- `p{k}:budget:t` (or `:all`), and `…:holds`: a budget (hash `spent`, `reserved`, token →
  amount; zset token → expiry µs).

Every key expires on its own (windows after their last hit, leases at the latest expiry,
budget periods `period_retention_s` after they start), so nothing needs sweeping.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from crossroads.counters import lua
from crossroads.counters.base import (
    PERIOD_RETENTION_S,
    RESERVATION_TTL_S,
    Admission,
    BudgetUsage,
    Refusal,
    Reservation,
    StateError,
    check_count,
    check_positive,
    period_epoch,
)

__all__ = ["RedisState"]

DEFAULT_PREFIX = "crossroads:"


def _us(seconds: float) -> int:
    return math.ceil(seconds * 1_000_000)


class RedisState:
    """The `State` protocol on a Redis server (≥ 5), through one redis-py asyncio client."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        period_retention_s: float = PERIOD_RETENTION_S,
    ) -> None:
        check_positive("period_retention_s", period_retention_s)
        self._redis = client
        self._prefix = prefix
        self._retention_s = period_retention_s
        self._hit = client.register_script(lua.HIT)
        self._adjust = client.register_script(lua.ADJUST)
        self._acquire = client.register_script(lua.ACQUIRE)
        self._reserve = client.register_script(lua.RESERVE)
        self._settle = client.register_script(lua.SETTLE)
        self._cancel = client.register_script(lua.CANCEL)
        self._usage = client.register_script(lua.BUDGET_USAGE)
        self._restore = client.register_script(lua.RESTORE_SPENT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        period_retention_s: float = PERIOD_RETENTION_S,
        timeout_s: float = 1.0,
    ) -> RedisState:
        """A state on the server at `url` (`redis://`, `rediss://`, `unix://`).

        `timeout_s` bounds connecting and each command, so a hung server costs a request
        at most that long; options in the URL's query string take precedence.
        """
        client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, prefix=prefix, period_retention_s=period_retention_s)

    async def hit(self, key: str, *, limit: int, cost: int = 1, window_s: float) -> Admission:
        check_count("cost", cost)
        check_positive("window_s", window_s)
        token = secrets.token_hex(8)
        allowed, used, reset, retry = await self._run(
            self._hit, self._window_keys(key), [limit, cost, _us(window_s), token]
        )
        return Admission(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(0, limit - used),
            reset_s=max(0, reset) / 1e6,
            retry_after_s=None if retry < 0 else max(0, retry) / 1e6,
            token=token if allowed else None,
        )

    async def adjust(self, key: str, token: str, cost: int) -> bool:
        check_count("cost", cost)
        return bool(await self._run(self._adjust, self._window_keys(key), [token, cost]))

    async def acquire(self, key: str, *, limit: int, lease_s: float) -> Admission:
        check_positive("lease_s", lease_s)
        token = secrets.token_hex(8)
        allowed, held, reset = await self._run(
            self._acquire, [self._lease_key(key)], [limit, _us(lease_s), token]
        )
        return Admission(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(0, limit - held),
            reset_s=max(0, reset) / 1e6,
            retry_after_s=0.0 if allowed else None,
            token=token if allowed else None,
        )

    async def release(self, key: str, token: str) -> bool:
        try:
            removed = await self._redis.zrem(self._lease_key(key), token)
        except (RedisError, OSError) as error:
            raise StateError(f"Redis: {error}") from error
        return bool(removed)

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
        token = secrets.token_hex(8)
        allowed, spent, reserved = await self._run(
            self._reserve,
            self._budget_keys(key, period_start),
            [amount, limit, _us(ttl_s), token, self._expire_at_ms(period_start)],
        )
        if not allowed:
            return Refusal(key=key, amount=amount, limit=limit, spent=spent, reserved=reserved)
        return Reservation(key=key, token=token, amount=amount, period_start=period_start)

    async def settle(self, reservation: Reservation, actual: int) -> BudgetUsage:
        check_count("actual", actual)
        period_start = reservation.period_start
        spent, reserved = await self._run(
            self._settle,
            self._budget_keys(reservation.key, period_start),
            [reservation.token, actual, self._expire_at_ms(period_start)],
        )
        return BudgetUsage(spent=spent, reserved=reserved)

    async def cancel(self, reservation: Reservation) -> bool:
        keys = self._budget_keys(reservation.key, reservation.period_start)
        return bool(await self._run(self._cancel, keys, [reservation.token]))

    async def budget_usage(self, key: str, *, period_start: datetime | None = None) -> BudgetUsage:
        spent, reserved = await self._run(self._usage, self._budget_keys(key, period_start), [])
        return BudgetUsage(spent=spent, reserved=reserved)

    async def restore_spent(
        self, key: str, at_least: int, *, period_start: datetime | None = None
    ) -> BudgetUsage:
        check_count("at_least", at_least)
        spent, reserved = await self._run(
            self._restore,
            self._budget_keys(key, period_start),
            [at_least, self._expire_at_ms(period_start)],
        )
        return BudgetUsage(spent=spent, reserved=reserved)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise StateError(f"Redis: {error}") from error

    def _window_keys(self, key: str) -> list[str]:
        base = f"{self._prefix}{{{key}}}:win"
        return [base, f"{base}:cost"]

    def _lease_key(self, key: str) -> str:
        return f"{self._prefix}{{{key}}}:lease"

    def _budget_keys(self, key: str, period_start: datetime | None) -> list[str]:
        start = period_epoch(period_start)
        base = f"{self._prefix}{{{key}}}:budget:{'all' if start is None else start}"
        return [base, f"{base}:holds"]

    def _expire_at_ms(self, period_start: datetime | None) -> int:
        start = period_epoch(period_start)
        return 0 if start is None else math.ceil((start + self._retention_s) * 1000)
