"""Circuit breakers: stop sending requests to a deployment that keeps failing.

One breaker per deployment, keyed like the live stats (`provider/upstream_model`). A
*closed* circuit lets everything through. It *opens* after `consecutive_failures` failures
in a row, or when its `window` holds at least `min_requests` requests and their error rate
is at least `error_rate`. An open circuit refuses everything for `cooldown` seconds, then
turns *half-open* (lazily, when next read) and lets up to `half_open_probes` trial requests
through at a time: a probe's success closes it, a failure opens it for a fresh cooldown.

The one design decision: what counts as a failure is the caller's call, not the breaker's.
The gateway reports `on_failure` only for the upstream's own faults — timeouts, connection
errors, 5xx, 429 — never for the caller's own 400s, which say nothing about the
deployment's health; an attempt that ends without a verdict (a 400, a hang-up) calls
`release` so that a half-open probe slot it holds is not lost.

Not thread-safe: the gateway uses breakers from its event loop only.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from crossroads.config import BreakerConfig

__all__ = ["BreakerState", "Breakers", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]

# Most outcomes kept for the error-rate rule: past this, the window is the most recent ones.
_MAX_EVENTS = 4096


class CircuitBreaker:
    """One deployment's circuit; see the module docstring for the state machine."""

    def __init__(self, policy: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._state: BreakerState = "closed"
        self._opened_at: float | None = None
        self._consecutive = 0
        self._probes = 0  # half-open probes in flight
        self._events: deque[tuple[float, bool]] = deque()  # (when, failed), closed only
        self._errors = 0  # failed events in `_events`
        # When (on `clock`) the circuit last closed after having been open: a replica that
        # saw the deployment recover later than another saw it fail does not re-open.
        self.recovered_at: float | None = None

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose cooldown has passed reads half-open."""
        if self._state == "open" and self._remaining_cooldown() <= 0:
            self._state = "half_open"
            self._probes = 0
        return self._state

    def allow(self) -> bool:
        """Whether a request may go to this deployment now (half-open: takes a probe slot)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probes >= self.policy.half_open_probes:
            return False
        self._probes += 1
        return True

    def release(self) -> None:
        """A half-open probe ended without a verdict (e.g. the caller hung up): free its slot.

        A no-op in any other state, so callers may release after every unjudged attempt.
        """
        if self.state == "half_open" and self._probes > 0:
            self._probes -= 1

    def on_success(self) -> None:
        """Half-open: close the circuit afresh. Closed: end the run of failures.

        A late success while open (from a request let through before it opened) changes
        nothing: the cooldown stands.
        """
        state = self.state
        if state == "half_open":
            self._close()
        elif state == "closed":
            self._consecutive = 0
            self._note(failed=False)

    def on_failure(self) -> None:
        """Count an upstream fault: may open a closed circuit; reopens a half-open one.

        A late failure while open (from a request let through before it opened) does not
        extend the cooldown.
        """
        state = self.state
        if state == "open":
            return
        self._consecutive += 1
        if state == "half_open":
            self._open()
            return
        self._note(failed=True)
        policy = self.policy
        requests = len(self._events)
        if self._consecutive >= policy.consecutive_failures or (
            requests >= policy.min_requests and self._errors / requests >= policy.error_rate
        ):
            self._open()

    def snapshot(self) -> dict[str, Any]:
        """The circuit's state for the stats endpoint (seconds rounded to 3 decimals)."""
        state = self.state
        self._evict()
        now = self._clock()
        opened_ago = None if self._opened_at is None else round(now - self._opened_at, 3)
        retry_in = round(self._remaining_cooldown(), 3) if state == "open" else None
        return {
            "state": state,
            "consecutive_failures": self._consecutive,
            "opened_at_s_ago": opened_ago,
            "retry_in_s": retry_in,
            "window_requests": len(self._events),
            "window_errors": self._errors,
        }

    def _remaining_cooldown(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.policy.cooldown - self._clock())

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probes = 0

    def force_open(self, remaining: float) -> None:
        """Open now for `remaining` seconds: another replica opened this circuit."""
        if self._state != "open":
            self._open()
        self._opened_at = self._clock() - max(self.policy.cooldown - remaining, 0.0)

    @property
    def remaining_cooldown(self) -> float:
        """Seconds until an open circuit turns half-open (0 unless open)."""
        return self._remaining_cooldown() if self._state == "open" else 0.0

    def _close(self) -> None:
        if self._state != "closed":
            self.recovered_at = self._clock()
        self._state = "closed"
        self._opened_at = None
        self._consecutive = 0
        self._probes = 0
        self._events.clear()
        self._errors = 0

    def _note(self, *, failed: bool) -> None:
        self._evict()
        if len(self._events) >= _MAX_EVENTS:
            self._errors -= self._events.popleft()[1]
        self._events.append((self._clock(), failed))
        self._errors += failed

    def _evict(self) -> None:
        cutoff = self._clock() - self.policy.window
        events = self._events
        while events and events[0][0] < cutoff:
            self._errors -= events.popleft()[1]


class Breakers:
    """A circuit breaker for every deployment, by `Deployment.key`, all on one policy."""

    def __init__(self, policy: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._by_key: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        """The deployment's breaker, created closed on first use."""
        breaker = self._by_key.get(key)
        if breaker is None:
            breaker = self._by_key[key] = CircuitBreaker(self.policy, self._clock)
        return breaker

    def keys(self) -> list[str]:
        return list(self._by_key)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every known breaker's snapshot, by key."""
        return {key: breaker.snapshot() for key, breaker in self._by_key.items()}
