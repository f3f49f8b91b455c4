"""Running one configured check on one text: the verdict, and the text to use afterwards.

`GuardrailEngines` holds the engines an app needs — the PII analyzer (spaCy and Presidio,
loaded on first use: about a second), the injection detector (its shipped classifier), custom
rules — and `run` applies one check to one text:

- nothing found, or a score under the threshold: `passed`, text unchanged;
- found, action `flag`: `flagged`, text unchanged;
- found, action `block`: `blocked` (the pipeline refuses the request or withholds the answer);
- found, action `redact`: the findings replaced — PII by its entity type (`<EMAIL_ADDRESS>`),
  other checks' spans by `[REDACTED]`;
- found, action `mask` (PII): the findings replaced by placeholders kept in the request's
  `MaskVault`, to be put back in the answer; for other checks `mask` means `redact`.

A check that cannot run (analyzer error, missing package or model, a custom rule that raises)
is an `error` result, and `blocked` too when its `on_error` is `block` (the default): a check
that did not run is not a check that passed.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from crossroads.guardrails.config import (
    CheckConfig,
    CustomCheck,
    InjectionCheck,
    OnError,
    PiiCheck,
    PolicyCheck,
)
from crossroads.guardrails.custom import load_rule, run_rule
from crossroads.guardrails.errors import EXTRA_HINT, GuardrailError, GuardrailUnavailable
from crossroads.guardrails.masking import MaskVault
from crossroads.guardrails.policy import evaluate_policy
from crossroads.guardrails.results import CheckResult, Detection, Outcome

if TYPE_CHECKING:
    from crossroads.guardrails.injection import InjectionDetector
    from crossroads.guardrails.pii import PiiEngine

__all__ = ["REDACTED", "GuardrailEngines"]

REDACTED = "[REDACTED]"


class GuardrailEngines:
    """The engines every check runs on, made once per app and shared by its requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pii: PiiEngine | None = None
        self._injection: InjectionDetector | None = None

    def pii(self) -> PiiEngine:
        with self._lock:
            if self._pii is None:
                try:
                    from crossroads.guardrails.pii import PiiEngine
                except ImportError as exc:
                    raise GuardrailUnavailable(f"PII checks need Presidio: {EXTRA_HINT}") from exc
                self._pii = PiiEngine()
            return self._pii

    def injection(self) -> InjectionDetector:
        with self._lock:
            if self._injection is None:
                from crossroads.guardrails.injection import InjectionDetector

                self._injection = InjectionDetector()
            return self._injection

    def warm(self, checks: list[CheckConfig]) -> None:
        """Load what `checks` need now (at start-up), not on the first request."""
        for check in checks:
            if isinstance(check, PiiCheck):
                self.pii().analyze("warm up: a@example.com", check.entities)
            elif isinstance(check, InjectionCheck):
                self.injection().detect("warm up", threshold=check.threshold)
            elif isinstance(check, CustomCheck):
                load_rule(check.rule)

    def run(
        self,
        check: CheckConfig,
        text: str,
        *,
        on_error: OnError,
        vault: MaskVault | None = None,
        index: int | None = None,
    ) -> tuple[CheckResult, str]:
        """`check`'s verdict on `text`, and the text to use from now on."""
        started = time.perf_counter()
        label = check.label
        try:
            score, detections = self._detect(check, text)
        except GuardrailError as exc:
            return self._failed(check, on_error, str(exc), started, index), text
        except Exception as exc:  # an engine's own defect is still "could not check"
            message = f"{type(exc).__name__}: {exc}"
            return self._failed(check, on_error, message, started, index), text
        threshold = getattr(check, "threshold", 0.5)
        triggered = bool(detections) if isinstance(check, PiiCheck | PolicyCheck) else False
        if isinstance(check, InjectionCheck | CustomCheck):
            triggered = score >= threshold
        outcome: Outcome = "passed"
        rewritten = text
        if triggered:
            try:
                outcome, rewritten = self._act(check, text, detections, vault)
            except GuardrailError as exc:
                return self._failed(check, on_error, str(exc), started, index), text
        result = CheckResult(
            check=check.check,
            name=label,
            action=check.action,
            triggered=triggered,
            score=score,
            outcome=outcome,
            detections=tuple(detections),
            latency_ms=(time.perf_counter() - started) * 1000,
            index=index,
        )
        return result, rewritten

    def _detect(self, check: CheckConfig, text: str) -> tuple[float, list[Detection]]:
        if isinstance(check, PiiCheck):
            found = self.pii().analyze(
                text, check.entities, threshold=check.threshold, allow=check.allow
            )
            return max((d.score for d in found), default=0.0), found
        if isinstance(check, InjectionCheck):
            verdict = self.injection().detect(
                text,
                threshold=check.threshold,
                rules=check.rules,
                classifier=check.classifier,
                onnx_model=check.onnx_model,
                onnx_threshold=check.onnx_threshold,
            )
            return verdict.score, list(verdict.detections)
        if isinstance(check, PolicyCheck):
            found = evaluate_policy(check, text)
            return (1.0 if found else 0.0), found
        return run_rule(load_rule(check.rule), text, check.options)

    def _act(
        self,
        check: CheckConfig,
        text: str,
        detections: list[Detection],
        vault: MaskVault | None,
    ) -> tuple[Outcome, str]:
        action = check.action
        if action == "flag":
            return "flagged", text
        if action == "block":
            return "blocked", text
        if isinstance(check, PiiCheck):
            if action == "mask" and vault is not None:
                return "masked", self.pii().mask(text, detections, vault)
            return "redacted", self.pii().redact(text, detections)
        return "redacted", _replace_spans(text, detections)

    @staticmethod
    def _failed(
        check: CheckConfig, on_error: OnError, message: str, started: float, index: int | None
    ) -> CheckResult:
        return CheckResult(
            check=check.check,
            name=check.label,
            action=check.action,
            triggered=False,
            score=0.0,
            outcome="blocked" if (check.on_error or on_error) == "block" else "error",
            latency_ms=(time.perf_counter() - started) * 1000,
            error=message,
            index=index,
        )


def _replace_spans(text: str, detections: list[Detection]) -> str:
    """Each detected span replaced by `[REDACTED]` (overlapping spans merged)."""
    spans = sorted((d.start, d.end) for d in detections if d.end > d.start)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, cursor = [], 0
    for start, end in merged:
        out += [text[cursor:start], REDACTED]
        cursor = end
    out.append(text[cursor:])
    return "".join(out)
