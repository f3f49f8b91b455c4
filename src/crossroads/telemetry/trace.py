"""What one request's trace records while it runs: attempts and stages, with their times.

Spans are made from it when the request's log record is submitted (telemetry/emit.py), so
the hot path only appends tuples: the OpenTelemetry SDK's span objects (about 20 µs each to
start and end) are built off to the side, in one go, with the times recorded here.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["RequestTrace", "StreamCheckSpan"]


class StreamCheckSpan(Protocol):
    """A response stage's check on a stream (pipeline/traced_check.py), read when the
    request's spans are made, so that a stream that failed midway still shows its checks."""

    def span(self) -> tuple[str, str, int, int, str | None, dict[str, Any]] | None: ...


class RequestTrace:
    __slots__ = ("attempts", "stages", "stream_checks")

    def __init__(self) -> None:
        # (the `routing.attempts` entry, wall-clock ns when the attempt ended)
        self.attempts: list[tuple[dict[str, Any], int]] = []
        # (stage name, "request" | "response", start ns, end ns, error type or None,
        #  extra span attributes or None: a stream check's segments and outcome)
        self.stages: list[tuple[str, str, int, int, str | None, dict[str, Any] | None]] = []
        self.stream_checks: list[StreamCheckSpan] = []

    def attempt(self, entry: dict[str, Any], ended_ns: int) -> None:
        self.attempts.append((entry, ended_ns))

    def stage(
        self,
        name: str,
        phase: str,
        started_ns: int,
        ended_ns: int,
        error: str | None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.stages.append((name, phase, started_ns, ended_ns, error, attributes))
