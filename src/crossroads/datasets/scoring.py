"""Scorers for evaluations: how well an answer matches a row's expected output, 0 to 1.

Pluggable by name: `crossroads eval --scorer NAME` looks the name up in `SCORERS`, and an
embedder adds its own with `register_scorer`. `exact` compares the text (whitespace at the
ends ignored) and, for an expected tool call, the function names and parsed arguments.
Criteria-based scoring (an LLM judge against named criteria) plugs in here as another
scorer once the gateway has criteria; it has none yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["SCORERS", "Scorer", "exact_match", "normalised_match", "register_scorer"]

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


SCORERS: dict[str, Scorer] = {"exact": exact_match, "normalised": normalised_match}


def register_scorer(name: str, scorer: Scorer) -> None:
    SCORERS[name] = scorer
