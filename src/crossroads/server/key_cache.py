"""Each replica's short memory of virtual keys, so authentication stays off the database.

Every request is authenticated, and a database round trip per request would cost more
than the gateway's whole latency budget. So a replica remembers each key it has looked up,
by the digest of its secret, for `KEY_CACHE_TTL` seconds (5), and a digest that matched no
key for `MISSING_KEY_TTL` seconds (1), which spares the database a client retrying with a
wrong key while a key just created on another replica works here within a second.

The TTL is how long a change made on another replica (a revoke, new limits or models) can
go unseen here; changes made through this replica's own admin API call `forget` and count
at once. Expiry needs no cache at all: `expires_at` travels with the record and is checked
on every request. Concurrent misses for one digest share one query.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TypeVar

from crossroads.storage.key_store import KeyStore, VirtualKey

__all__ = ["KEY_CACHE_TTL", "MISSING_KEY_TTL", "KeyCache"]

KEY_CACHE_TTL = 5.0
MISSING_KEY_TTL = 1.0

V = TypeVar("V")


class KeyCache:
    """Virtual keys by secret digest, read through to a `KeyStore`. Event-loop thread only."""

    def __init__(
        self,
        store: KeyStore,
        *,
        ttl: float = KEY_CACHE_TTL,
        missing_ttl: float = MISSING_KEY_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or missing_ttl < 0 or max_entries < 1:
            raise ValueError("ttl and missing_ttl must be >= 0 and max_entries >= 1")
        self._store = store
        self._ttl = ttl
        self._missing_ttl = missing_ttl
        self._max_entries = max_entries
        self._clock = clock
        # digest → (valid until, record); insertion order is age order, oldest evicted first.
        self._found: dict[str, tuple[float, VirtualKey]] = {}
        # Kept apart so a flood of wrong keys cannot push real ones out.
        self._missing: dict[str, float] = {}
        self._loading: dict[str, asyncio.Task[VirtualKey | None]] = {}
        # Bumped by `forget`: a lookup that began before it must not cache what it read.
        self._generation = 0
        self.queries = 0

    async def lookup(self, key_hash: str) -> VirtualKey | None:
        """The key with this digest, whatever its status; None when there is none.

        Raises what the store raises when the database cannot be reached (nothing is cached).
        """
        now = self._clock()
        found = self._found.get(key_hash)
        if found is not None and found[0] > now:
            return found[1]
        missing_until = self._missing.get(key_hash)
        if missing_until is not None and missing_until > now:
            return None
        task = self._loading.get(key_hash)
        if task is None:
            task = asyncio.create_task(
                self._load(key_hash, self._generation), name="crossroads-key-lookup"
            )
            self._loading[key_hash] = task
            task.add_done_callback(functools.partial(self._loaded, key_hash))
        # Shielded: a caller that gives up must not cancel the query others wait on.
        return await asyncio.shield(task)

    def forget(self, key_hash: str) -> None:
        """Drop what is known about this digest; the next lookup reads the database."""
        self._generation += 1
        self._found.pop(key_hash, None)
        self._missing.pop(key_hash, None)
        self._loading.pop(key_hash, None)

    def clear(self) -> None:
        self._generation += 1
        self._found.clear()
        self._missing.clear()
        self._loading.clear()

    async def _load(self, key_hash: str, generation: int) -> VirtualKey | None:
        self.queries += 1
        record = await self._store.find_by_hash(key_hash)
        if generation == self._generation:
            now = self._clock()
            if record is None:
                self._found.pop(key_hash, None)
                self._put(self._missing, key_hash, now + self._missing_ttl)
            else:
                self._missing.pop(key_hash, None)
                self._put(self._found, key_hash, (now + self._ttl, record))
        return record

    def _loaded(self, key_hash: str, task: asyncio.Task[VirtualKey | None]) -> None:
        if self._loading.get(key_hash) is task:
            del self._loading[key_hash]
        if not task.cancelled():
            task.exception()  # retrieved here, raised to every waiter

    def _put(self, table: dict[str, V], key: str, value: V) -> None:
        table.pop(key, None)
        while len(table) >= self._max_entries:
            del table[next(iter(table))]
        table[key] = value
