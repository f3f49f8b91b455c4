"""Scorers for evaluations: how well an answer matches a row's expected output, 0 to 1.

Pluggable by name: `crossroads eval --scorer NAME` looks the name up in `SCORERS`, and an
embedder adds its own with `register_scorer`. `exact` compares the text (whitespace at the
ends ignored) and, for an expected tool call, the function names and parsed arguments.
`criteria` scores by the gateway's LLM-judge criteria instead (`crossroads eval --criteria`):
the runner asks for them with each request and hands the scorer the answer together with its
choice's `criteria_results`; the score is the share of criteria that passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = [
    "SCORERS",
    "Scorer",
    "criteria_passed",
    "exact_match",
    "normalised_match",
    "register_scorer",
]

# (expected assistant message, the answer's assistant message) -> score from 0 to 1
Scorer = Callable[[dict[str, Any], dict[str, Any]], float]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _calls(message: dict[str, Any]) -> list[tuple[Any, Any]]:
    out = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        try:
            arguments = orjson.loads(function.get("arguments") or "null")
        except orjson.JSONDecodeError:
            arguments = function.get("arguments")
        out.append((function.get("name"), arguments))
    return out


def exact_match(expected: dict[str, Any], answer: dict[str, Any]) -> float:
    if expected.get("tool_calls"):
        return 1.0 if _calls(expected) == _calls(answer) else 0.0
    return 1.0 if _text(expected).strip() == _text(answer).strip() else 0.0


def normalised_match(expected: dict[str, Any], answer: dict[str, Any]) -> float:
    """Exact match after case folding and collapsing whitespace."""
    if expected.get("tool_calls"):
        return exact_match(expected, answer)

    def norm(text: str) -> str:
        return " ".join(text.casefold().split())

    return 1.0 if norm(_text(expected)) == norm(_text(answer)) else 0.0


def criteria_passed(expected: dict[str, Any], answer: dict[str, Any]) -> float:
    """The share of the answer's criteria that passed; a judge's error counts as a fail.
    The expected output is not looked at: the criteria are the reference."""
    results = answer.get("criteria_results") or []
    if not results:
        return 0.0
    return sum(1 for r in results if r.get("status") == "pass") / len(results)


SCORERS: dict[str, Scorer] = {
    "exact": exact_match,
    "normalised": normalised_match,
    "criteria": criteria_passed,
}


def register_scorer(name: str, scorer: Scorer) -> None:
    SCORERS[name] = scorer
