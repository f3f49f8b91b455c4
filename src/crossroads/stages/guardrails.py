"""Guardrails as pipeline stages: input checks before the call, output checks after it.

Input checks look at the text of every message the upstream would receive. A blocking
finding refuses the request with 400 `guardrail_blocked` naming the check (no upstream call);
`redact` and `mask` rewrite what the upstream receives — and the log stores the rewritten
messages, so masked values are never logged — and `flag` only reports. With `mask`, the
values go upstream as placeholders and come back in the answer.

Output checks look at each choice's text: on a complete answer at once, on a stream by the
set's policy (`sentence`: each sentence before it is sent; `hold`: each choice whole before
it is sent; `pass`: nothing enforced, the whole answer checked at the end for the record). A
blocked answer is replaced by a refusal with finish reason `content_filter`.

Results: `choices[i].content_filter_results` per choice, `prompt_filter_results` for the
input, a top-level `guardrails` summary; all in the log record too.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from crossroads.config import Config
from crossroads.guardrails.config import CheckConfig, GuardrailSet
from crossroads.guardrails.masking import MaskVault
from crossroads.guardrails.results import (
    CheckResult,
    Detection,
    content_filter_results,
    guardrails_summary,
    prompt_filter_results,
    refusal_text,
)
from crossroads.guardrails.runner import GuardrailEngines
from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.stages import Stage, StreamCheck, StreamPolicy, StreamRefusal
from crossroads.protocol.errors import GatewayError
from crossroads.stages.guardrail_layers import GuardrailLayers

__all__ = ["GuardrailsKind", "GuardrailsStage"]

_STRENGTH = {"passed": 0, "error": 1, "flagged": 2, "masked": 3, "redacted": 3, "blocked": 4}


class GuardrailsKind:
    """Picks each request's guardrail set (pipeline/stages.py `StageKind`)."""

    name = "guardrails"
    before = True
    after = True

    def __init__(self, config: Config, engines: GuardrailEngines | None = None) -> None:
        self.layers = GuardrailLayers(config)
        self.engines = engines or GuardrailEngines()

    def dormant(self) -> frozenset[str] | None:
        """With no operator layer, only a request's own `guardrails` (or a virtual key's
        stored set) turns the stage on."""
        return None if self.layers.configured else frozenset({"guardrails"})

    def warm(self) -> None:
        """Load the engines the operator's guardrails need (start-up, in a thread)."""
        self.engines.warm(self.layers.operator_checks())

    def select(self, chat: PreparedChat) -> Stage | None:
        rules = self.layers.resolve(chat)
        return GuardrailsStage(rules, self.engines) if rules is not None else None


class GuardrailsStage(Stage):
    name = "guardrails"

    def __init__(self, rules: GuardrailSet, engines: GuardrailEngines) -> None:
        self.rules = rules
        self.engines = engines
        self.vault = MaskVault()
        self.input_results: list[CheckResult] = []
        self.output_results: list[CheckResult] = []

    # --- before the call ---------------------------------------------------------------------

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        if not self.rules.input:
            return None
        messages = chat.body["messages"]
        rewritten, results = await asyncio.to_thread(self.check_messages, messages)
        self.input_results = results
        self._report(chat)
        if blocked := next((r for r in results if r.blocked), None):
            # A refused request is logged too, and checking stopped at the block.
            logged = await asyncio.to_thread(self._loggable, messages, None, results)
            self._log_messages(chat, logged)
            raise GatewayError(
                400,
                f"The request was blocked by the '{blocked.name}' guardrail "
                f"({_why(blocked)}); change the messages or ask the operator.",
                type="invalid_request_error",
                param=f"messages[{blocked.index}]" if blocked.index is not None else "messages",
                code="guardrail_blocked",
            )
        if rewritten is not messages:
            chat.rewrite_messages(rewritten)
        self._log_messages(chat, self._loggable(messages, rewritten, results))
        return None

    def _loggable(
        self,
        messages: list[dict[str, Any]],
        rewritten: list[dict[str, Any]] | None,
        results: list[CheckResult],
    ) -> list[dict[str, Any]] | None:
        """The messages as the log may keep them: with every `mask`/`redact` input check
        applied (the messages sent upstream; for a refused request, whose checking stopped
        at the block, the checks are run over all of it here), or with their contents
        withheld when such a check could not run — a value that could not be masked is not
        logged either. None: log the messages as they are (no rewriting checks)."""
        rewriting = tuple(c for c in self.rules.input if c.action in ("mask", "redact"))
        if not rewriting:
            return rewritten if rewritten is not messages else None
        labels = {c.label for c in rewriting}
        if rewritten is None:
            rewritten, results = self.check_messages(messages, rewriting)
        if any(r.error is not None and r.name in labels for r in results):
            return [_withheld(m) for m in messages]
        return rewritten

    def _log_messages(self, chat: PreparedChat, logged: list[dict[str, Any]] | None) -> None:
        if logged is not None and chat.record.request is not None:
            chat.record.request["messages"] = logged  # the log keeps what was sent
        if self.vault:
            chat.scrub_log(self.vault.mask_known)

    def check_messages(
        self, messages: list[dict[str, Any]], checks: tuple[CheckConfig, ...] | None = None
    ) -> tuple[list[dict[str, Any]], list[CheckResult]]:
        """Run `checks` (the set's input checks) over every message's text; stops at the
        first block. Returns the rewritten messages (the same list if none changed)."""
        checks = self.rules.input if checks is None else checks
        results: list[CheckResult] = []
        out: list[dict[str, Any]] | None = None
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                new, found = self.check_text(checks, content, i)
                results += found
                if new != content:
                    out = out if out is not None else list(messages)
                    out[i] = {**message, "content": new}
            elif isinstance(content, list):
                parts = list(content)
                changed = False
                for k, part in enumerate(parts):
                    text = part.get("text") if isinstance(part, dict) else None
                    if part.get("type") == "text" and isinstance(text, str):
                        new, found = self.check_text(checks, text, i)
                        results += found
                        if new != text:
                            parts[k] = {**part, "text": new}
                            changed = True
                if changed:
                    out = out if out is not None else list(messages)
                    out[i] = {**message, "content": parts}
            if any(r.blocked for r in results):
                break  # the request is refused: the rest need not be looked at
        return (out if out is not None else messages), results

    def check_text(
        self, checks: tuple[CheckConfig, ...], text: str, index: int | None
    ) -> tuple[str, list[CheckResult]]:
        results: list[CheckResult] = []
        for check in checks:
            result, text = self.engines.run(
                check, text, on_error=self.rules.on_error, vault=self.vault, index=index
            )
            results.append(result)
            if result.blocked:
                break
        return text, results

    # --- after the call ----------------------------------------------------------------------

    async def after(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        if not self.rules.output and not self.vault:
            return
        for choice in response.get("choices") or ():
            message = choice.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                continue
            index = int(choice.get("index") or 0)
            text = self.vault.unmask(message["content"])
            text, results = await asyncio.to_thread(self.check_text, self.rules.output, text, index)
            self.output_results += results
            if blocked := next((r for r in results if r.blocked), None):
                text = refusal_text(blocked)
                choice["finish_reason"] = "content_filter"
            message["content"] = text
            if self.rules.output:
                choice["content_filter_results"] = content_filter_results(results)
        self._report(chat)

    def stream(self, chat: PreparedChat) -> StreamCheck | None:
        if not self.rules.output and not self.vault:
            return None
        policy: StreamPolicy = self.rules.stream
        if policy == "pass" and self.vault:
            policy = "sentence"  # placeholders must still be put back, piece by piece
        return _GuardrailStream(self, policy)

    def _report(self, chat: PreparedChat) -> None:
        chat.report("guardrails", guardrails_summary(self.input_results, self.output_results))
        if self.input_results:
            chat.report("prompt_filter_results", prompt_filter_results(self.input_results))


class _GuardrailStream(StreamCheck):
    """Output checks on a stream, piece by piece; results folded per choice and check."""

    def __init__(self, stage: GuardrailsStage, policy: StreamPolicy) -> None:
        self.stage = stage
        self.policy = policy
        self._folded: dict[int, dict[str, CheckResult]] = {}
        self._offsets: dict[int, int] = {}

    async def check(self, index: int, text: str) -> str:
        stage = self.stage
        text = stage.vault.unmask(text)
        if stage.rules.stream == "pass":
            return text  # unmasked only; checked whole at the end
        checked, results = await asyncio.to_thread(
            stage.check_text, stage.rules.output, text, index
        )
        self._fold(index, results)
        self._offsets[index] = self._offsets.get(index, 0) + len(text)
        if blocked := next((r for r in results if r.blocked), None):
            raise StreamRefusal(refusal_text(blocked))
        return checked

    def _fold(self, index: int, results: list[CheckResult]) -> None:
        """One result per check and choice: the strongest outcome, the highest score, every
        detection at its offset in the whole choice."""
        shift = self._offsets.get(index, 0)
        folded = self._folded.setdefault(index, {})
        for result in results:
            moved = tuple(
                Detection(d.kind, d.start + shift, d.end + shift, d.score)
                for d in result.detections
            )
            before = folded.get(result.name)
            if before is None:
                folded[result.name] = replace(result, detections=moved)
                continue
            stronger = result if _STRENGTH[result.outcome] > _STRENGTH[before.outcome] else before
            folded[result.name] = replace(
                stronger,
                triggered=before.triggered or result.triggered,
                score=max(before.score, result.score),
                detections=before.detections + moved,
                latency_ms=before.latency_ms + result.latency_ms,
            )

    def choice_fields(self, index: int) -> dict[str, Any]:
        results = list(self._folded.get(index, {}).values())
        return {"content_filter_results": content_filter_results(results)} if results else {}

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        stage = self.stage
        if stage.rules.stream == "pass" and stage.rules.output:
            # Nothing was enforced; the whole answer is checked now, for the record.
            for choice in completion.get("choices") or ():
                content = (choice.get("message") or {}).get("content")
                if isinstance(content, str):
                    index = int(choice.get("index") or 0)
                    _text, results = stage.check_text(stage.rules.output, content, index)
                    self._fold(index, results)
        for index, folded in sorted(self._folded.items()):
            stage.output_results += folded.values()
            for choice in completion.get("choices") or ():
                if int(choice.get("index") or 0) == index:
                    choice["content_filter_results"] = content_filter_results(folded.values())
        stage._report(chat)


def _why(result: CheckResult) -> str:
    if result.error is not None:
        return f"it could not run: {result.error}"
    kinds = sorted({d.kind for d in result.detections})
    return f"found {', '.join(kinds)}" if kinds else f"score {result.score:.2f}"


_WITHHELD = "[withheld from the log: a masking guardrail could not check this message]"


def _withheld(message: Any) -> Any:
    if not isinstance(message, dict) or "content" not in message:
        return message
    return {**message, "content": _WITHHELD}
