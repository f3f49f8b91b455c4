"""Breaker states and live stats shared between replicas through Redis.

Each replica keeps its own breakers and stats in memory, where routing reads them with no
round trip on the request path. A background task exchanges them every `sync_interval`:

* **Breakers.** A circuit this replica opened is published as `…:breaker:{deployment}`,
  holding when it opened and when it half-opens, expiring with its cooldown. A replica
  that finds a published open circuit opens its own for the rest of that cooldown, unless it
  has itself seen the deployment recover since. A replica whose probe closes the circuit
  deletes the published entry. So one replica's failures spare the others theirs, within
  one sync interval.
* **Live stats.** Each replica publishes its per-deployment snapshot under
  `…:stats:{deployment}`, one hash field per replica, expiring unless refreshed.
  `GET /v1/providers/stats` then shows every replica's view and the totals. Latency-based
  strategies keep using the local window; its samples are this replica's own requests.

Redis being unreachable only pauses the exchange: routing goes on with local state.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from crossroads.periodic import Periodic
from crossroads.routing.breaker import Breakers
from crossroads.routing.stats import LiveStats

__all__ = ["SharedRouting"]

logger = logging.getLogger("crossroads.routing.shared")

_PREFIX = "crossroads:routing:"


class SharedRouting:
    """The exchange of one replica's breakers and stats with the others'."""

    def __init__(
        self,
        url: str,
        *,
        breakers: Breakers,
        stats: LiveStats,
        deployments: Callable[[], Iterable[str]],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._breakers = breakers
        self._stats = stats
        self._deployments = deployments
        self._interval = interval
        self._clock = clock
        self.replica = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._failing = False  # warned once per outage, not on every failed exchange
        self._periodic = Periodic(
            self._exchange,
            interval,
            name="shared-routing",
            logger=logger,
            failure="sharing routing state failed",
            immediately=True,
        )

    def start(self) -> None:
        self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()
        await self._redis.aclose()

    async def _exchange(self) -> None:
        try:
            await self.sync()
            self._failing = False
        except (RedisError, OSError) as exc:
            if not self._failing:
                logger.warning("cannot share routing state through Redis: %s", exc)
            self._failing = True

    def _epoch(self, moment: float) -> float:
        """A `clock` reading as Unix time, so replicas can compare it."""
        return time.time() - (self._clock() - moment)

    async def sync(self) -> None:
        """One exchange: publish what this replica knows, adopt what the others published."""
        keys = sorted(set(self._deployments()) | set(self._breakers.keys()))
        if not keys:
            return
        names = [f"{_PREFIX}breaker:{key}" for key in keys]
        published = await self._redis.mget(names)
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for key, name, raw in zip(keys, names, published, strict=True):
            breaker = self._breakers.get(key)
            remote = orjson.loads(raw) if raw else None
            state = breaker.state
            if state == "open":
                remaining = breaker.remaining_cooldown
                until = now + remaining
                if remote is None or remote["until"] < until - self._interval:
                    value = {"opened": now - (breaker.policy.cooldown - remaining), "until": until}
                    pipe.set(name, orjson.dumps(value), px=max(int(remaining * 1000), 1))
            elif remote is not None and remote["until"] > now:
                recovered = breaker.recovered_at
                if recovered is not None and self._epoch(recovered) > remote["opened"]:
                    pipe.delete(name)  # this replica saw it recover after it was opened
                elif state == "closed":
                    breaker.force_open(remote["until"] - now)
            snapshot = {**self._stats.get(key).snapshot(), "breaker": breaker.state, "at": now}
            stats_name = f"{_PREFIX}stats:{key}"
            pipe.hset(stats_name, self.replica, orjson.dumps(snapshot).decode())
            pipe.expire(stats_name, max(int(self._interval * 10), 10))
        await pipe.execute()

    async def cluster_stats(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Per deployment: every live replica's snapshot, and requests/errors summed."""
        keys = list(keys)
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(f"{_PREFIX}stats:{key}")
        rows = await pipe.execute()
        stale = time.time() - max(self._interval * 10, 10)
        out: dict[str, dict[str, Any]] = {}
        for key, row in zip(keys, rows, strict=True):
            replicas = {
                (name.decode() if isinstance(name, bytes) else name): orjson.loads(value)
                for name, value in row.items()
            }
            replicas = {name: snap for name, snap in replicas.items() if snap["at"] >= stale}
            out[key] = {
                "requests": sum(s.get("requests") or 0 for s in replicas.values()),
                "errors": sum(s.get("errors") or 0 for s in replicas.values()),
                "replicas": replicas,
            }
        return out
