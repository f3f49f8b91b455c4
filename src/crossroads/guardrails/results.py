"""What a check found, in a shape that is safe to log and to return to the caller.

A result never holds the text it looked at: detections carry the entity type, the offsets and
a score, never the value, so a result can go into the request log even when masking is on.
The render helpers give the OpenAI/Azure shapes: `content_filter_results` on each choice,
`prompt_filter_results` for the request, and a top-level `guardrails` summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CheckResult",
    "Detection",
    "Outcome",
    "content_filter_results",
    "guardrails_summary",
    "prompt_filter_results",
    "refusal_text",
]

# What a check did to the text: nothing, blocked it, rewrote it, or only reported.
Outcome = Literal["passed", "blocked", "redacted", "masked", "flagged", "error"]


@dataclass(frozen=True, slots=True)
class Detection:
    """One finding: what kind, where (character offsets in the checked text), how sure."""

    kind: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict on one text.

    `triggered` says the check found something at or above its threshold; `outcome` says what
    was done about it (a triggered `flag` check is `flagged`; a check that failed to run is
    `error`, and `blocked` as well when it fails closed).
    """

    check: str
    name: str
    action: str
    triggered: bool
    score: float
    outcome: Outcome
    detections: tuple[Detection, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    # Which message (input) or choice (output) the text came from, when the caller says.
    index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        return self.outcome == "blocked"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "check": self.check,
            "name": self.name,
            "action": self.action,
            "triggered": self.triggered,
            "outcome": self.outcome,
            "score": round(self.score, 4),
            "detections": [d.to_dict() for d in self.detections],
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.error is not None:
            data["error"] = self.error
        if self.index is not None:
            data["index"] = self.index
        if self.extra:
            data.update(self.extra)
        return data


def _category(results: Iterable[CheckResult]) -> dict[str, Any]:
    """Per check name: Azure's `{filtered, detected}` plus what Crossroads adds."""
    categories: dict[str, Any] = {}
    for result in results:
        entry = categories.get(result.name)
        detected = result.triggered or (entry is not None and entry["detected"])
        filtered = result.outcome in ("blocked", "redacted", "masked") or (
            entry is not None and entry["filtered"]
        )
        types = sorted(
            {d.kind for d in result.detections} | set(entry["types"] if entry is not None else ())
        )
        score = max(result.score, entry["score"] if entry is not None else 0.0)
        categories[result.name] = {
            "filtered": filtered,
            "detected": detected,
            "action": result.action,
            "score": round(score, 4),
            "types": types,
        }
        if result.error is not None:
            categories[result.name]["error"] = result.error
    return categories


def content_filter_results(results: Iterable[CheckResult]) -> dict[str, Any]:
    """The `choices[i].content_filter_results` object for one choice's output results."""
    return _category(results)


def prompt_filter_results(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """Azure's `prompt_filter_results`: one entry per checked message (`prompt_index`)."""
    by_index: dict[int, list[CheckResult]] = {}
    for result in results:
        by_index.setdefault(result.index or 0, []).append(result)
    return [
        {"prompt_index": index, "content_filter_results": _category(items)}
        for index, items in sorted(by_index.items())
    ]


def guardrails_summary(
    input_results: Sequence[CheckResult], output_results: Sequence[CheckResult] = ()
) -> dict[str, Any]:
    """The top-level `guardrails` object: every result, what triggered, what blocked."""
    everything = [*input_results, *output_results]
    blocked = next((r for r in everything if r.blocked), None)
    return {
        "blocked": blocked is not None,
        "blocked_by": blocked.name if blocked is not None else None,
        "triggered": sorted({r.name for r in everything if r.triggered}),
        "input": [r.to_dict() for r in input_results],
        "output": [r.to_dict() for r in output_results],
        "latency_ms": round(sum(r.latency_ms for r in everything), 3),
    }


def refusal_text(result: CheckResult) -> str:
    """What an answer says instead when an output check blocks it."""
    return f"The answer was withheld by the '{result.name}' guardrail."
