"""The stage seam: where guardrails, caching, retrieval, pruning and quality checks plug in.

A stage is one feature's work around the upstream call. Before the call it may rewrite the
request (mask PII, inject passages, prune) or answer it itself (a cache hit; a block is a
raised `GatewayError`). After the call it sees the complete answer, or the stream under the
policy it declares — pass it through and look at the whole at the end, hold it until it is
checked, or check it sentence by sentence — and may flag or rewrite it.

Stages are chosen per request: each kind of stage (`StageKind`) looks at the prepared request
(its config, model, key, body) and returns a `Stage` for it, or None when it is off, so a
feature that is off costs one call that returns None. The order is fixed and is not the
registration order: before the call pruning, guardrails, cache lookup, retrieval; after it
guardrails, quality, cache store (DESIGN.md §3). What a stage finds is reported under its
name, in the response and in the log record (`PreparedChat.report`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from crossroads.pipeline.context import PreparedChat
    from crossroads.telemetry.trace import RequestTrace

T = TypeVar("T")

__all__ = [
    "REQUEST_ORDER",
    "RESPONSE_ORDER",
    "Segmenter",
    "Stage",
    "StageKind",
    "StagePlan",
    "StageSelector",
    "StreamCheck",
    "StreamPolicy",
    "StreamRefusal",
]

StreamPolicy = Literal["pass", "hold", "sentence"]

# Where each kind of stage runs, by name; a kind not named here cannot be registered.
REQUEST_ORDER = ("pruning", "guardrails", "cache", "retrieval", "mixture")
RESPONSE_ORDER = ("guardrails", "quality", "mixture", "cache")


class StreamRefusal(Exception):
    """Raised by a stream check that will not let a segment through: the choice ends here,
    with `message` as its last words and finish reason `content_filter`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Segmenter(Protocol):
    """Cuts one choice's streamed text into the pieces a check looks at."""

    def push(self, text: str) -> list[str]:
        """Text that arrived; returns the pieces now complete (possibly none)."""
        ...

    def flush(self) -> list[str]:
        """The stream ended: whatever is left, as pieces."""
        ...


class StreamCheck:
    """One response stage's view of a stream: text in, text out, one choice at a time.

    `policy` decides what the check sees: `pass` lets text through unchanged as it arrives
    (`check` is not called; `finish` sees the whole answer), `hold` gives `check` each
    choice's whole text at its end, `sentence` gives it each sentence as it completes.
    """

    policy: StreamPolicy = "pass"

    def segmenter(self) -> Segmenter | None:
        """For policy `sentence`: a fresh splitter for one choice (None: the default one)."""
        return None

    async def check(self, index: int, text: str) -> str:
        """The text to send for one piece of choice `index`; raise `StreamRefusal` to end it."""
        return text

    def choice_fields(self, index: int) -> dict[str, Any]:
        """Fields for choice `index`'s last chunk, once its text has all been checked
        (e.g. `content_filter_results`)."""
        return {}

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        """The stream is over: `completion` is what the caller received, assembled. Report."""


class Stage:
    """One feature's work on one request. Subclasses override what they need."""

    name: str = ""

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        """Before the upstream call: rewrite the request (`chat.rewrite_messages`), refuse it
        (raise `GatewayError`), or answer it — return a complete `chat.completion` and no
        upstream is called."""
        return None

    async def after(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        """After a complete answer: look at it, flag it, rewrite it in place."""

    def stream(self, chat: PreparedChat) -> StreamCheck | None:
        """For a streamed answer: the check to run on it (None: this stage ignores streams)."""
        return None


class StageKind(Protocol):
    """A kind of stage (guardrails, cache, …): picks its stage for a request, or None.

    A kind may also define `dormant() -> frozenset[str] | None`, asked once at start-up:
    when nothing in the configuration turns the kind on, the request fields that can (it
    is then asked only for a request that sets one of them, carries a stage header or a
    virtual key, whose stored settings may turn it on); None when the configuration may.
    """

    name: str
    before: bool  # whether its stages run before the call
    after: bool  # whether its stages run after the call

    def select(self, chat: PreparedChat) -> Stage | None: ...


class StagePlan:
    """The stages one request runs, in their fixed order before and after the call."""

    __slots__ = ("after", "before")

    def __init__(self, before: list[Stage], after: list[Stage]) -> None:
        self.before = before
        self.after = after

    def __bool__(self) -> bool:
        return bool(self.before or self.after)

    async def run_before(self, chat: PreparedChat) -> tuple[dict[str, Any] | None, Stage | None]:
        """Run the request stages; an answer from one of them ends the walk (returned with
        the stage that gave it)."""
        trace = chat.trace
        for stage in self.before:
            if trace is None:
                answer = await stage.before(chat)
            else:
                answer = await _timed(trace, stage.name, "request", stage.before(chat))
            if answer is not None:
                return answer, stage
        return None, None

    async def run_after(
        self, chat: PreparedChat, response: dict[str, Any], answered_by: Stage | None = None
    ) -> None:
        trace = chat.trace
        for stage in self.after:
            if stage is answered_by:
                continue
            if trace is None:
                await stage.after(chat, response)
            else:
                await _timed(trace, stage.name, "response", stage.after(chat, response))

    def stream_checks(self, chat: PreparedChat) -> list[StreamCheck]:
        checks = [(stage, check) for stage in self.after if (check := stage.stream(chat))]
        if chat.trace is None:
            return [check for _, check in checks]
        from crossroads.pipeline.traced_check import TracedCheck  # it imports this module

        return [TracedCheck(check, stage.name, chat.trace) for stage, check in checks]


async def _timed(trace: RequestTrace, name: str, phase: str, work: Awaitable[T]) -> T:
    """`work`, with its start and end recorded as a stage span (OpenTelemetry on)."""
    started = time.time_ns()
    error: str | None = None
    try:
        return await work
    except BaseException as exc:
        error = getattr(exc, "code", None) or type(exc).__name__
        raise
    finally:
        trace.stage(name, phase, started, time.time_ns(), error)


class StageSelector:
    """Picks the stages of each request from the kinds the gateway runs.

    Every request asks every kind, except that a dormant kind (see `StageKind`) is skipped
    for a request that cannot wake it: with nothing configured, the common request costs a
    set test, not a call per kind.
    """

    __slots__ = ("_awake", "_dormant", "_fields", "kinds")

    def __init__(self, kinds: Sequence[StageKind]) -> None:
        self.kinds = list(kinds)
        fields: set[str] = set()
        self._awake: list[StageKind] = []
        self._dormant = False
        for kind in self.kinds:
            dormant = getattr(kind, "dormant", None)
            woken_by = dormant() if dormant is not None else None
            if woken_by is None:
                self._awake.append(kind)
            else:
                self._dormant = True
                fields |= woken_by
        self._fields = frozenset(fields)

    def select(self, chat: PreparedChat) -> StagePlan | None:
        """The stages `chat` runs, in order; None when none does."""
        kinds = self._awake
        if self._dormant and (
            chat.context.virtual_key is not None
            or chat.context.cache_header is not None
            or not self._fields.isdisjoint(chat.request.model_fields_set)
        ):
            kinds = self.kinds
        if not kinds:
            return None
        chosen = {kind.name: (kind, stage) for kind in kinds if (stage := kind.select(chat))}
        if not chosen:
            return None
        before = [chosen[n][1] for n in REQUEST_ORDER if n in chosen and chosen[n][0].before]
        after = [chosen[n][1] for n in RESPONSE_ORDER if n in chosen and chosen[n][0].after]
        return StagePlan(before, after)


def check_order(kinds: Sequence[StageKind]) -> None:
    """Refuse, at start-up, a kind of stage that has no place in the fixed order."""
    for kind in kinds:
        if kind.before and kind.name not in REQUEST_ORDER:
            raise ValueError(f"stage {kind.name!r} has no place before the call {REQUEST_ORDER}")
        if kind.after and kind.name not in RESPONSE_ORDER:
            raise ValueError(f"stage {kind.name!r} has no place after the call {RESPONSE_ORDER}")
