"""A stream check's time, as one stage span: put around each check only when tracing is on.

A stream check runs a little at a time (one call per sentence, or once at the end), so its
span cannot be the time from its first call to its last, which is most of the stream. This
wrapper adds up the time spent inside the check itself (`check` and `finish`); the request's
spans, made once its record is written, read it (`span`): it starts when the check first ran
and lasts the total, and its attributes say how many segments were checked and how it went —
also for a stream that failed before its end.

Only `StagePlan.stream_checks` puts it in place, and only when the request has a trace: with
telemetry off the relay calls the stage's own check, with nothing added per chunk.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from crossroads.pipeline.stages import Segmenter, StreamCheck, StreamRefusal

if TYPE_CHECKING:
    from crossroads.pipeline.context import PreparedChat
    from crossroads.telemetry.trace import RequestTrace

__all__ = ["TracedCheck"]


class TracedCheck(StreamCheck):
    """`inner`, timed: the segments it saw, its outcome, the time spent in it."""

    def __init__(self, inner: StreamCheck, name: str, trace: RequestTrace) -> None:
        self.inner = inner
        self.name = name
        self.trace = trace
        self.policy = inner.policy
        self.segments = 0
        # "passed": every piece let through as it was; "rewritten": some changed;
        # "refused": a piece ended its choice; "error": the check raised.
        self.outcome = "passed"
        self.error: str | None = None
        self.started_ns: int | None = None
        self.spent_ns = 0
        self.finished = False
        trace.stream_checks.append(self)

    def segmenter(self) -> Segmenter | None:
        return self.inner.segmenter()

    async def check(self, index: int, text: str) -> str:
        started = time.time_ns()
        if self.started_ns is None:
            self.started_ns = started
        self.segments += 1
        try:
            out = await self.inner.check(index, text)
        except StreamRefusal:
            self.outcome = "refused"
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            self.spent_ns += time.time_ns() - started
        if out != text and self.outcome == "passed":
            self.outcome = "rewritten"
        return out

    def choice_fields(self, index: int) -> dict[str, Any]:
        return self.inner.choice_fields(index)

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        started = time.time_ns()
        if self.started_ns is None:
            self.started_ns = started
        try:
            self.inner.finish(chat, completion)
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            self.spent_ns += time.time_ns() - started
            self.finished = True

    def span(self) -> tuple[str, str, int, int, str | None, dict[str, Any]] | None:
        """This check's stage span, or None if it never ran."""
        if self.started_ns is None:
            return None
        attributes: dict[str, Any] = {
            "crossroads.stage.stream_policy": self.policy,
            "crossroads.stage.segments": self.segments,
            "crossroads.stage.outcome": self.outcome,
        }
        if not self.finished:
            attributes["crossroads.stage.finished"] = False  # the stream ended early
        started = self.started_ns
        return (self.name, "response", started, started + self.spent_ns, self.error, attributes)

    def _failed(self, exc: BaseException) -> None:
        self.outcome = "error"
        self.error = getattr(exc, "code", None) or type(exc).__name__
