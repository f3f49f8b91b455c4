"""What to do after a failed attempt: retry the same deployment, fail over, or give up.

An upstream failure is one of three things. *Transient* — a timeout, a dropped
connection, 408, 429, 500, 502, 503, 504, 529 — is retried on the same deployment with
exponential backoff and jitter (honouring `Retry-After` up to a limit), then failed over.
*The deployment's own fault* — it refused our credentials (401/403) or does not know the
model id (404) — is failed over at once: another deployment may well work. *The caller's
fault* — 400, 413, 422, and 401/403 to a call made with the caller's own key
(`openai_api_key`) — ends the request: every deployment would say the same, and it says
nothing about the deployment. Nothing is ever retried past the request's deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from crossroads.config import RoutingConfig
from crossroads.providers.base import UpstreamError

__all__ = ["Backoff", "Verdict", "counts_against_deployment", "verdict"]

Verdict = Literal["retry", "failover", "fail"]

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
_DEPLOYMENT_STATUSES = frozenset({401, 403, 404})


def verdict(error: UpstreamError, *, caller_key: bool = False) -> Verdict:
    """How to treat this failure (see the module docstring); `caller_key`: the call used
    the caller's own upstream key."""
    if error.failure != "http" or error.status is None:
        return "retry"  # timeout, connection, malformed body, stream cut before content
    if error.status in _TRANSIENT_STATUSES or error.status >= 500:
        return "retry"
    if error.status in _DEPLOYMENT_STATUSES and not (caller_key and error.status != 404):
        return "failover"
    return "fail"


def counts_against_deployment(error: UpstreamError, *, caller_key: bool = False) -> bool:
    """Whether the failure is the deployment's (breakers and error rates count it)."""
    return verdict(error, caller_key=caller_key) != "fail"


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: a random wait in [0, initial · 2^attempt], capped."""

    config: RoutingConfig
    rng: random.Random

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `retry` (0-based), or None: fail over instead.

        An upstream's `Retry-After` is a floor; one longer than `max_retry_after` means
        waiting here is worse than trying another deployment.
        """
        ceiling = min(self.config.backoff_initial * 2**retry, self.config.backoff_max)
        wait = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            if retry_after > self.config.max_retry_after:
                return None
            wait = max(wait, retry_after)
        return wait
