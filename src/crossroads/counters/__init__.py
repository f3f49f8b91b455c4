"""Shared counters for rate limits, concurrency limits and budgets: in memory or in Redis.

One gateway keeps them in process memory (`MemoryState`, the default); replicas behind a
load balancer share them through Redis (`RedisState`), which is what makes a limit hold
across replicas. `build_state` picks one from a URL; `State` is what the gateway types against.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from crossroads.counters.base import (
    NANOS_PER_USD,
    PERIOD_RETENTION_S,
    RESERVATION_TTL_S,
    Admission,
    BudgetUsage,
    Refusal,
    Reservation,
    State,
    StateError,
    nanos_to_usd,
    usd_to_nanos,
)
from crossroads.counters.memory import MemoryState
from crossroads.counters.redis import RedisState

__all__ = [
    "NANOS_PER_USD",
    "PERIOD_RETENTION_S",
    "RESERVATION_TTL_S",
    "Admission",
    "BudgetUsage",
    "MemoryState",
    "RedisState",
    "Refusal",
    "Reservation",
    "State",
    "StateError",
    "build_state",
    "nanos_to_usd",
    "usd_to_nanos",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def build_state(url: str | None, *, prefix: str = "crossroads:") -> State:
    """The state at `url`: None or `memory://` for process memory, `redis://`, `rediss://`
    or `unix://` for a Redis server (`prefix` starts every Redis key).

    Connecting is lazy: an unreachable server shows up as `StateError` on first use.
    """
    if url is None:
        return MemoryState()
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryState()
    if scheme in _REDIS_SCHEMES:
        return RedisState.from_url(url, prefix=prefix)
    # Only the scheme is repeated: the rest of the URL may hold a password.
    raise ValueError(
        f"unsupported state URL scheme {scheme + '://' if scheme else '(none)'}: "
        "use memory://, redis://, rediss:// or unix://"
    )
