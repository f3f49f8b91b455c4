"""Custom checks: a rule written in Python, found by entry point or dotted path.

A rule is any callable `rule(text: str, options: dict) -> result`, where result is a float
score from 0 to 1, a bool (True: 1.0), or an iterable of `Detection` (score: the highest).
It is found by name in the entry point group `crossroads.guardrails` (a package declares
`[project.entry-points."crossroads.guardrails"] mine = "mypkg.rules:mine"`), or, when the
name has a colon, as a dotted path `package.module:function`. A rule that cannot be found is
`GuardrailUnavailable`; one that raises or returns something else is `GuardrailError` — the
check then fails closed or open by its `on_error`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from crossroads.guardrails.errors import GuardrailError, GuardrailUnavailable
from crossroads.guardrails.results import Detection

__all__ = ["ENTRY_POINT_GROUP", "Rule", "load_rule", "run_rule"]

ENTRY_POINT_GROUP = "crossroads.guardrails"

Rule = Callable[[str, dict[str, Any]], Any]


@lru_cache(maxsize=128)
def load_rule(spec: str) -> Rule:
    """The rule named `spec`: an entry point name, else `package.module:function`."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == spec:
            try:
                loaded = entry.load()
            except Exception as exc:
                raise GuardrailUnavailable(f"custom rule {spec!r} failed to load: {exc}") from exc
            return _callable(spec, loaded)
    if ":" not in spec:
        raise GuardrailUnavailable(
            f"no custom rule named {spec!r}: register it in the entry point group "
            f"{ENTRY_POINT_GROUP!r} or name it as 'package.module:function'"
        )
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise GuardrailUnavailable(
            f"custom rule {spec!r}: cannot import {module_name}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise GuardrailUnavailable(f"custom rule {spec!r}: {module_name} has no {attribute}")
    return _callable(spec, target)


def _callable(spec: str, value: Any) -> Rule:
    if not callable(value):
        raise GuardrailUnavailable(f"custom rule {spec!r} is not callable")
    rule: Rule = value
    return rule


def run_rule(rule: Rule, text: str, options: dict[str, Any]) -> tuple[float, list[Detection]]:
    """The rule's verdict on `text` as (score, detections)."""
    try:
        result = rule(text, dict(options))
    except Exception as exc:
        raise GuardrailError(f"custom rule raised {type(exc).__name__}: {exc}") from exc
    if isinstance(result, bool):
        return (1.0 if result else 0.0), []
    if isinstance(result, int | float):
        return min(max(float(result), 0.0), 1.0), []
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | dict):
        detections = list(result)
        if all(isinstance(d, Detection) for d in detections):
            return max((d.score for d in detections), default=0.0), detections
    raise GuardrailError(
        f"custom rule returned {type(result).__name__}; expected a score, a bool or Detections"
    )
