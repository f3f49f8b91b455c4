"""The ways an answer's hallucination risk is measured; each returns a risk in [0, 1].

- `grounding` (default): the packaged logistic model over lexical/entity grounding against
  the context (stages/grounding.py); no upstream call.
- `overlap`: the share of the answer's tokens the context lacks (the benchmark's baseline).
- `onnx`: the same grounding features scored by a local ONNX model from `quality.onnx_path`.
- `consistency` (SelfCheck-style): `samples - 1` more answers from the same model; a sentence
  the other samples do not support is likely made up. Risk = mean unsupported share.
- `judge`: `quality.judge_model` reads the context and the answer and gives a probability.

The context is everything the answer may lean on: the conversation's messages (system, user,
earlier assistant turns, tool results) and passages a retrieval stage reported, if any.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.side_calls import SideBill, SideCalls, answer_text
from crossroads.stages.grounding import (
    GroundingModel,
    Support,
    grounding_features,
    load_grounding_model,
    overlap_risk,
    sentences,
    unsupported_claims,
)

__all__ = ["Assessor", "Checkers", "Risk", "conversation_context", "parse_probability"]

_NUMBER = re.compile(r"\b(?:0?\.\d+|1(?:\.0+)?|0|\d{1,3}(?:\.\d+)?%?)\b")
_JUDGE_PROMPT = (
    "You check answers for hallucinations. Given the context and an answer, estimate the "
    "probability (0 to 1) that the answer states something the context does not support or "
    "that is false. Reply with the probability on the first line, then each unsupported "
    "claim on its own line starting with '- '."
)


@dataclass(slots=True)
class Risk:
    """One answer's risk by one method, with what it saw."""

    risk: float
    method: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def conversation_context(chat: PreparedChat) -> tuple[list[str], str]:
    """Every text the answer may lean on, and the question (the last user message)."""
    texts: list[str] = []
    question = ""
    for message in chat.body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        text = _text(message.get("content"))
        for call in message.get("tool_calls") or ():
            text += " " + str((call.get("function") or {}).get("arguments") or "")
        if text:
            texts.append(text)
        if message.get("role") == "user":
            question = text
    for passage in _retrieved(chat.reports):
        texts.append(passage)
    return texts, question


def _retrieved(reports: dict[str, Any]) -> list[str]:
    """Passages a retrieval stage put in its report (`citations` or `retrieval`)."""
    out: list[str] = []
    for name in ("citations", "retrieval"):
        found = reports.get(name)
        items = found.get("passages") if isinstance(found, dict) else found
        for item in items if isinstance(items, list) else ():
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                out += [str(item[k]) for k in ("text", "content", "snippet") if item.get(k)]
    return out


class Checkers:
    """The local models risk is scored with, loaded once per gateway (at start-up by
    `warm`, or on first use): the packaged grounding model and the optional ONNX checker."""

    def __init__(self, onnx_path: str | None) -> None:
        self.onnx_path = onnx_path
        self._grounding: GroundingModel | None = None
        self._onnx: Any = None

    def warm(self) -> None:
        self.grounding()
        if self.onnx_path is not None:
            self.onnx()

    def grounding(self) -> GroundingModel:
        if self._grounding is None:
            self._grounding = load_grounding_model()
        return self._grounding

    def onnx(self) -> Any:
        if self._onnx is None:
            import onnxruntime  # the `onnx` extra: only needed when an operator configures it

            assert self.onnx_path is not None  # the kind refuses `onnx` without a path
            self._onnx = onnxruntime.InferenceSession(
                self.onnx_path, providers=["CPUExecutionProvider"]
            )
        return self._onnx


class Assessor:
    """Measures risk for one request: its context, its side calls, its bill."""

    def __init__(
        self,
        chat: PreparedChat,
        side: SideCalls | None,
        bill: SideBill,
        *,
        samples: int,
        judge_model: str | None,
        checkers: Checkers,
    ) -> None:
        self.chat = chat
        self.side = side
        self.bill = bill
        self.samples = samples
        self.judge_model = judge_model
        self.checkers = checkers
        self.context, self.question = conversation_context(chat)
        self.support = Support.of(self.context, self.question)

    async def assess(self, method: str, answer: str, model: str) -> Risk:
        if method == "consistency":
            return await self._consistency(answer, model)
        if method == "judge":
            return await self._judge(answer)
        return self.offline(method, answer)

    def offline(self, method: str, answer: str) -> Risk:
        """The methods that need no upstream call: `overlap`, `grounding`, `onnx`."""
        if method == "overlap":
            return Risk(overlap_risk(self.support, answer), method, self._claims(answer))
        if method == "grounding":
            features = grounding_features(self.support, answer)
            risk = self.checkers.grounding().risk(features)
            return Risk(risk, method, {**self._claims(answer), "support": round(features[0], 3)})
        return self._onnx(answer)

    def _claims(self, answer: str) -> dict[str, Any]:
        return {
            "unsupported": unsupported_claims(self.support, answer),
            "unsupported_entities": sorted(set(self.support.unsupported_entities(answer)))[:20],
        }

    def _onnx(self, answer: str) -> Risk:
        features = np.asarray([grounding_features(self.support, answer)], dtype=np.float32)
        session = self.checkers.onnx()
        name = session.get_inputs()[0].name
        output = session.run(None, {name: features})[0]
        risk = float(np.asarray(output).reshape(-1)[-1])
        return Risk(min(1.0, max(0.0, risk)), "onnx", self._claims(answer))

    async def _consistency(self, answer: str, model: str) -> Risk:
        assert self.side is not None
        body = self.chat.body
        seed: int = body["seed"] if isinstance(body.get("seed"), int) else 0
        params: dict[str, Any] = {"temperature": 1.0}
        if isinstance(body.get("max_tokens"), int):
            params["max_tokens"] = body["max_tokens"]
        calls = [
            self.side.complete(
                self.chat, self.bill, "quality", model, body["messages"], seed=seed + k, **params
            )
            for k in range(1, self.samples)
        ]
        others = [answer_text(r) for r in await asyncio.gather(*calls)]
        supports = [Support.of([o], "") for o in others]
        scored = []
        for sentence in sentences(answer) or [answer]:
            shares = [1.0 - overlap_risk(s, sentence) for s in supports]
            scored.append((sentence, 1.0 - sum(shares) / len(shares)))
        risk = sum(s for _, s in scored) / len(scored) if scored else 0.0
        evidence = {
            "samples": len(others) + 1,
            "unsupported": [s for s, score in scored if score > 0.5],
            "sentence_risk": [round(s, 3) for _, s in scored],
        }
        return Risk(risk, "consistency", evidence)

    async def _judge(self, answer: str) -> Risk:
        assert self.side is not None and self.judge_model is not None
        context = "\n\n".join(self.context)
        messages = [
            {"role": "system", "content": _JUDGE_PROMPT},
            {"role": "user", "content": f"Context:\n{context}\n\nAnswer:\n{answer}"},
        ]
        response = await self.side.complete(
            self.chat, self.bill, "quality", self.judge_model, messages, temperature=0
        )
        verdict = answer_text(response)
        risk = parse_probability(verdict)
        claims = [line[2:].strip() for line in verdict.splitlines() if line.startswith("- ")]
        return Risk(
            risk if risk is not None else 0.5,
            "judge",
            {"judge_model": self.judge_model, "unsupported": claims, "verdict": verdict[:500]},
        )


def parse_probability(text: str) -> float | None:
    """The first probability a judge wrote ("0.8", "80%", "80"), as 0–1; None if none."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    raw = match.group()
    value = float(raw.rstrip("%"))
    if raw.endswith("%") or value > 1:
        value /= 100
    return min(1.0, max(0.0, value))
