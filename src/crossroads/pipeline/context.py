"""What a request carries through the pipeline: its call context, then its prepared form.

`CallContext` is what the HTTP layer knows before the body is parsed; `PreparedChat` is the
validated request with its route(s) and the ledger that keeps its books. Both are plain
data: the pipeline's steps read and fill them, none of them owns them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crossroads.storage.key_store import VirtualKey
from crossroads.storage.records import LogRecord, new_log_id
from crossroads.telemetry.trace import RequestTrace

if TYPE_CHECKING:
    from crossroads.pipeline.ledger import Ledger
    from crossroads.pipeline.stages import StagePlan
    from crossroads.protocol.chat import ChatCompletionRequest
    from crossroads.routing.attempts import Attempts
    from crossroads.routing.fanout import Branch

__all__ = ["CallContext", "PreparedChat"]


@dataclass(slots=True)
class CallContext:
    """What the HTTP layer knows about a request before its body is parsed."""

    key_id: str | None = None
    session_header: str | None = None
    tags: list[str] | None = None
    received: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    log_id: str = field(default_factory=new_log_id)
    # The caller's virtual key (models, limits, budget); None for config keys and loopback.
    virtual_key: VirtualKey | None = None
    # Per-request overrides of routing.timeout / attempt_timeout (headers), in seconds.
    timeout: float | None = None
    attempt_timeout: float | None = None
    # x-ratelimit-* headers for the response, once the key's limits admitted the request.
    limit_headers: dict[str, str] | None = None
    # The `x-crossroads-cache` header (a cache mode for this request), if sent.
    cache_header: str | None = None


@dataclass(slots=True)
class PreparedChat:
    """A validated request with its route: the deployments it may go to, in order."""

    context: CallContext
    request: ChatCompletionRequest
    body: dict[str, Any]
    attempts: Attempts
    ledger: Ledger

    # Fan-out (`model: "a,b"`): one route per model; `attempts` is then the first's.
    branches: list[Branch] | None = None

    # The stages this request runs (pipeline/stages.py); None: none.
    stages: StagePlan | None = None
    # What each stage found, by stage name: added to the response and to the log record.
    reports: dict[str, Any] = field(default_factory=dict)
    # Attempts' and stages' times for OpenTelemetry (telemetry/); None when it is off.
    trace: RequestTrace | None = None

    @property
    def record(self) -> LogRecord:
        return self.ledger.record

    def report(self, name: str, result: Any) -> None:
        """A stage's result, shown under `name` in the response and kept in the log."""
        self.reports[name] = result

    def rewrite_messages(self, messages: list[dict[str, Any]]) -> None:
        """Send `messages` upstream instead of the caller's (every route of the request).

        The log keeps the caller's own messages unless a stage also scrubs them
        (`Ledger.scrub`)."""
        self.body["messages"] = messages
        for branch in self.branches or ():
            branch.attempts.body["messages"] = messages
        self.attempts.body["messages"] = messages

    def rewrite_field(self, name: str, value: Any = None) -> None:
        """Send `value` as body field `name` upstream (None: leave the field out), on every
        route of the request; the log keeps the caller's own."""
        for body in (
            self.body,
            self.attempts.body,
            *(b.attempts.body for b in self.branches or ()),
        ):
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value

    def scrub_log(self, scrubber: Callable[[str], str]) -> None:
        """Apply `scrubber` to every string of the log record before it is written."""
        self.ledger.scrub(scrubber)

    @property
    def notices(self) -> dict[str, Any]:
        """What the answer says about parameters the serving provider did not take as sent:
        `dropped_params` (it cannot honour them: removed) and `adjusted_params` (outside its
        range: clamped into it, the value sent)."""
        chosen = self.attempts.chosen
        out: dict[str, Any] = {}
        if chosen is not None and chosen.parameters.dropped:
            out["dropped_params"] = chosen.parameters.dropped
        if chosen is not None and chosen.parameters.adjusted:
            out["adjusted_params"] = chosen.parameters.adjusted
        return out
