"""Answer quality as a response stage: hallucination risk, autocorrect, criteria, and the
integrity model's pick among voted candidates.

The stage runs when the config turns it on for every answer (`quality.enabled`, or a model's
or key's `answer_quality`: stages/quality_layers.py) or the request asks:
`quality_risk_threshold`, a `quality` object, `criteria`, `integrity_model`.
Each answer gets `quality: {risk, threshold, flagged, autocorrected, method, evidence}`:
above the threshold it is flagged, or with action `autocorrect` rewritten
(stages/quality_fix.py) and scored again. Methods are in stages/quality_risk.py; extra
upstream calls go through pipeline/side_calls.py and are added to the answer's usage, so the
key is billed for them. On a stream, methods that need no upstream call look at the answer
when it has passed (policy `pass`); anything that calls upstream or may rewrite the answer
holds each choice until it is checked (policy `hold`).
"""

from __future__ import annotations

import re
from typing import Any

from crossroads.config import Config
from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.side_calls import SideBill, SideCalls, answer_text
from crossroads.pipeline.stages import Stage, StreamCheck, StreamPolicy
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.quality_config import CriterionConfig, QualityConfig
from crossroads.stages.criteria import evaluate_criteria
from crossroads.stages.quality_fix import autocorrect
from crossroads.stages.quality_layers import QualityLayers
from crossroads.stages.quality_risk import Assessor, Checkers

__all__ = ["QualityKind", "QualityStage"]

_OFFLINE = ("grounding", "overlap", "onnx")  # methods that need no upstream call
_PICK = (
    "Several candidate answers to the conversation below follow, numbered. Choose the one "
    "most likely to be correct. Reply with its number only."
)


# The request fields that ask for a quality stage (`QualityKind.select` reads no others).
REQUEST_FIELDS = frozenset(
    {"integrity", "integrity_model", "criteria", "quality", "quality_risk_threshold"}
)


class QualityKind:
    """Picks each request's quality settings (pipeline/stages.py `StageKind`)."""

    name = "quality"
    before = False
    after = True

    def __init__(self, config: QualityConfig, full: Config | None = None) -> None:
        self.config = config
        self.layers = QualityLayers(config, full)
        self.side: SideCalls | None = None
        self.checkers = Checkers(config.onnx_path)

    def dormant(self) -> frozenset[str] | None:
        """With nothing configured, only the request's quality fields (or a virtual key's
        stored layer) turn the stage on."""
        return None if self.layers.configured else REQUEST_FIELDS

    def warm(self) -> None:
        """Load the risk models now (start-up, in a thread), not on a first request."""
        self.checkers.warm()

    def bind(self, side: SideCalls) -> None:
        """The gateway's side calls (judges, criteria, regeneration), given at start-up."""
        self.side = side

    def select(self, chat: PreparedChat) -> Stage | None:
        request = chat.request
        config = self.config
        integrity = request.integrity or 1
        if integrity > config.max_integrity:
            raise bad_request(
                f"`integrity` asks {integrity} answers; this gateway allows at most "
                f"{config.max_integrity}.",
                param="integrity",
            )
        if request.integrity_model is not None:
            if integrity < 2:
                raise bad_request(
                    "`integrity_model` picks among integrity candidates: send `integrity` ≥ 2.",
                    param="integrity_model",
                )
            self._require(request.integrity_model, "integrity_model")
        elif (
            request.criteria is None
            and request.quality is None
            and request.quality_risk_threshold is None
            and self.layers.silent(chat)
        ):
            return None  # nothing asked, nothing configured: the common case, kept cheap
        settings = self.layers.resolve(chat)
        if request.criteria is not None:
            criteria = self._criteria(request.criteria, "criteria")
        else:
            criteria = self._criteria(settings.criteria or [], settings.criteria_from)
        wants_risk = (
            settings.enabled
            or request.quality_risk_threshold is not None
            or request.quality is not None
        )
        if not (wants_risk or criteria or request.integrity_model):
            return None
        method = settings.method
        judge_model = settings.judge_model
        if wants_risk and method == "judge" and judge_model is None:
            raise bad_request(
                "Method `judge` needs a judge model: set `quality.judge_model`.",
                param="quality.judge_model",
            )
        if judge_model is not None and settings.judge_from_request:
            self._require(judge_model, "quality.judge_model")
        if wants_risk and method == "onnx" and config.onnx_path is None:
            raise bad_request(
                "Method `onnx` needs `quality.onnx_path` in the gateway's config.",
                param="quality.method",
            )
        return QualityStage(
            self,
            method=method if wants_risk else None,
            threshold=settings.threshold,
            action=settings.action,
            mode=settings.autocorrect,
            samples=settings.samples,
            judge_model=judge_model,
            criteria=criteria,
            integrity_model=request.integrity_model,
        )

    def _require(self, model: str, param: str) -> None:
        if self.side is not None:
            self.side.require(model, param)

    def _criteria(self, names: list[str], source: str) -> dict[str, CriterionConfig]:
        out = {}
        for i, name in enumerate(names):
            if name not in self.config.criteria:
                known = ", ".join(sorted(self.config.criteria)) or "none are configured"
                raise bad_request(
                    f"Unknown criterion {name!r} in {source}; this gateway's criteria: {known}.",
                    param=f"criteria[{i}]",
                    code="unknown_criterion",
                )
            out[name] = self.config.criteria[name]
        return out


class QualityStage(Stage):
    name = "quality"

    def __init__(
        self,
        kind: QualityKind,
        *,
        method: str | None,
        threshold: float,
        action: str,
        mode: str,
        samples: int,
        judge_model: str | None,
        criteria: dict[str, CriterionConfig],
        integrity_model: str | None,
    ) -> None:
        self.kind = kind
        self.method = method
        self.threshold = threshold
        self.action = action
        self.mode = mode
        self.samples = samples
        self.judge_model = judge_model
        self.criteria = criteria
        self.integrity_model = integrity_model
        self.bill = SideBill()
        self.reports: dict[int, dict[str, Any]] = {}
        self.criteria_results: dict[int, list[dict[str, Any]]] = {}
        self._assessor: Assessor | None = None

    def assessor(self, chat: PreparedChat) -> Assessor:
        if self._assessor is None:
            self._assessor = Assessor(
                chat,
                self.kind.side,
                self.bill,
                samples=self.samples,
                judge_model=self.judge_model,
                checkers=self.kind.checkers,
            )
        return self._assessor

    # --- a complete answer -------------------------------------------------------------------

    async def after(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        for choice in response.get("choices") or ():
            message = choice.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                continue
            index = int(choice.get("index") or 0)
            model = str(choice.get("model") or chat.request.model)
            message["content"] = await self.review(chat, index, message["content"], model)
        if self.criteria and self.kind.side is not None:
            await evaluate_criteria(chat, self.kind.side, self.bill, self.criteria, response)
        self.close(chat, response)

    async def review(self, chat: PreparedChat, index: int, text: str, model: str) -> str:
        """One choice's text after the integrity model's pick and the risk check."""
        if self.integrity_model is not None and index == 0:
            text = await self._pick(chat, text)
        if self.method is not None:
            text = await self._check(chat, index, text, model)
        return text

    def close(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        """Bill the side calls to the answer's usage and report."""
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.bill.charge(usage)
        if self.reports:
            worst = max(self.reports.values(), key=lambda r: r["risk"] or 0.0)
            report = dict(worst)
            if len(self.reports) > 1:
                report["choices"] = [self.reports[i] for i in sorted(self.reports)]
            chat.report("quality", report)

    async def _check(self, chat: PreparedChat, index: int, text: str, model: str) -> str:
        assert self.method is not None
        assessor = self.assessor(chat)
        report: dict[str, Any] = {
            "risk": None,
            "threshold": self.threshold,
            "flagged": False,
            "autocorrected": False,
            "method": self.method,
            "evidence": {},
        }
        if len(chat.request.model_names) > 1 or (chat.request.n or 1) > 1:
            report["index"] = index
        self.reports[index] = report
        try:
            risk = await assessor.assess(self.method, text, model)
        except GatewayError as exc:
            report["evidence"] = {"error": exc.message}
            return text
        report.update(risk=round(risk.risk, 4), evidence=risk.evidence)
        report["flagged"] = risk.risk > self.threshold
        if not report["flagged"] or self.action != "autocorrect":
            return text
        try:
            fixed = await autocorrect(
                assessor, self.mode, text, model, list(risk.evidence.get("unsupported") or [])
            )
            again = await assessor.assess(self.method, fixed.text, model) if fixed else None
        except GatewayError as exc:
            report["evidence"]["autocorrect"] = {"mode": self.mode, "error": exc.message}
            return text
        if fixed is None or again is None or again.risk >= risk.risk:
            report["evidence"]["autocorrect"] = {"mode": self.mode, "changed": False}
            return text
        report.update(
            risk=round(again.risk, 4),
            flagged=again.risk > self.threshold,
            autocorrected=True,
            evidence={
                **again.evidence,
                "autocorrect": {
                    "mode": fixed.mode,
                    "changed": True,
                    "risk_before": round(risk.risk, 4),
                    "removed": fixed.removed,
                    "original": text,
                },
            },
        )
        return fixed.text

    async def _pick(self, chat: PreparedChat, text: str) -> str:
        """`integrity_model` chooses among the distinct voted candidates."""
        integrity = chat.reports.get("integrity")
        side = self.kind.side
        if not isinstance(integrity, dict) or side is None or self.integrity_model is None:
            return text
        candidates = [c["content"] for c in integrity.get("candidates") or ()]
        if len(candidates) < 2:
            integrity.update(method="model", judged_by=self.integrity_model, chosen=0)
            return text
        listed = "\n\n".join(f"[{i + 1}] {c}" for i, c in enumerate(candidates))
        transcript = "\n".join(
            f"{m.get('role')}: {m.get('content')}"
            for m in chat.body["messages"]
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        )
        messages = [
            {"role": "system", "content": _PICK},
            {"role": "user", "content": f"{transcript}\n\nCandidates:\n{listed}"},
        ]
        try:
            response = await side.complete(
                chat, self.bill, "integrity", self.integrity_model, messages, temperature=0
            )
        except GatewayError as exc:
            integrity.update(judged_by=self.integrity_model, judge_error=exc.message)
            return text
        match = re.search(r"\d+", answer_text(response))
        chosen = int(match.group()) - 1 if match else -1
        if not 0 <= chosen < len(candidates):
            integrity.update(judged_by=self.integrity_model, judge_error="no candidate number")
            return text
        integrity.update(method="model", judged_by=self.integrity_model, chosen=chosen)
        return str(candidates[chosen])

    # --- a stream ----------------------------------------------------------------------------

    def stream(self, chat: PreparedChat) -> StreamCheck | None:
        calls_upstream = self.method not in (None, *_OFFLINE) or self.criteria
        rewrites = self.action == "autocorrect" or self.integrity_model is not None
        policy: StreamPolicy = "hold" if calls_upstream or rewrites else "pass"
        return _QualityStream(self, chat, policy)


class _QualityStream(StreamCheck):
    def __init__(self, stage: QualityStage, chat: PreparedChat, policy: StreamPolicy) -> None:
        self.stage = stage
        self.chat = chat
        self.policy = policy

    async def check(self, index: int, text: str) -> str:
        stage = self.stage
        text = await stage.review(self.chat, index, text, str(self.chat.request.model))
        if stage.criteria and stage.kind.side is not None:
            choice: dict[str, Any] = {"index": index, "message": {"content": text}}
            one = {"choices": [choice]}
            await evaluate_criteria(self.chat, stage.kind.side, stage.bill, stage.criteria, one)
            stage.criteria_results[index] = choice.get("criteria_results", [])
        return text

    def choice_fields(self, index: int) -> dict[str, Any]:
        results = self.stage.criteria_results.get(index)
        return {"criteria_results": results} if results is not None else {}

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        stage = self.stage
        for choice in completion.get("choices") or ():
            index = int(choice.get("index") or 0)
            if index in stage.criteria_results:
                choice["criteria_results"] = stage.criteria_results[index]
        if self.policy == "pass" and stage.method is not None:
            # Offline methods only (no upstream call), so this runs synchronously here.
            assessor = stage.assessor(chat)
            for choice in completion.get("choices") or ():
                content = (choice.get("message") or {}).get("content")
                if not isinstance(content, str):
                    continue
                index = int(choice.get("index") or 0)
                risk = assessor.offline(stage.method, content)
                stage.reports[index] = {
                    "risk": round(risk.risk, 4),
                    "threshold": stage.threshold,
                    "flagged": risk.risk > stage.threshold,
                    "autocorrected": False,
                    "method": stage.method,
                    "evidence": risk.evidence,
                }
        stage.close(chat, completion)
