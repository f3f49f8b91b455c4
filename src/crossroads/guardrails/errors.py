"""Why a guardrail could not run.

A check that cannot run is not a check that passed: the runner turns these errors into an
`error` result and then blocks or allows according to `on_error` (block by default).
"""

from __future__ import annotations

__all__ = ["GuardrailError", "GuardrailUnavailable"]

EXTRA_HINT = "install the guardrails extra: pip install 'crossroads[guardrails]'"


class GuardrailError(Exception):
    """A check failed while running (analyzer error, bad model output, rule raised)."""


class GuardrailUnavailable(GuardrailError):
    """A check needs something that is not installed or not found (a package, a model file)."""
