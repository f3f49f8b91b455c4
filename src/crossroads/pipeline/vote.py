"""Integrity: N answers to one request, a vote, the winner returned (`integrity: N`).

The N candidates are N branches of the relay, each its own route to the same model with its
own `seed` (so an upstream that honours seeds samples differently). The `Vote` join
normalises each candidate (case, punctuation, spacing; a trailing "the answer is" kept to
its value), counts identical normalised answers and returns the first answer of the largest
group as choice 0, with `integrity: {votes, agreement, candidates}` — agreement being the
winner's share of the answers, a confidence score. A stream is held until every candidate
has ended (there is no winner before), then the winner is sent; the stream stages see it as
if it had just arrived. Usage is the sum over all candidates: the caller pays for N answers.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from crossroads.pipeline.joins import FanOut, Outcome
from crossroads.pipeline.side_calls import answer_text
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError
from crossroads.routing.fanout import sum_usage

__all__ = ["Vote", "normalize_answer", "tally"]

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
_FINAL = re.compile(r"(?:final answer|the answer is|answer:)\s*(.+)$", re.IGNORECASE | re.DOTALL)


def normalize_answer(text: str) -> str:
    """The form answers are compared in: what follows "the answer is", lower case, no
    punctuation, single spaces."""
    if match := _FINAL.search(text):
        text = match.group(1)
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def tally(texts: list[str]) -> list[tuple[str, list[int]]]:
    """Groups of candidate indexes by normalised answer, largest first (ties: earliest)."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(normalize_answer(text), []).append(i)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0]))


class Vote(FanOut):
    """N candidates of one model become one answer: the most common."""

    survives_failure = True

    def answer(
        self, outcomes: list[Outcome], usages: list[dict[str, Any] | None], latency_ms: float
    ) -> dict[str, Any]:
        answered = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, dict)]
        texts = [answer_text(o) for _, o in answered]
        groups = tally(texts)
        winner_index, winner = answered[groups[0][1][0]]
        choices = winner.get("choices") or []
        choice = dict(choices[0]) if choices else {"message": {"role": "assistant"}}
        choice["index"] = 0
        response: dict[str, Any] = {
            "id": winner.get("id") or f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion",
            "created": winner.get("created") or int(time.time()),
            "model": self.chat.request.model,
            "choices": [choice],
            "usage": sum_usage([u for u in usages if u is not None], latency_ms),
            "provider": winner.get("provider"),
            "routing": self.branches[winner_index].attempts.routing(),
        }
        response.update(self.chat.notices)
        integrity = {
            "votes": len(groups[0][1]),
            "agreement": round(len(groups[0][1]) / len(texts), 4),
            "asked": len(outcomes),
            "answered": len(texts),
            "method": "vote",
            "candidates": [
                {"content": texts[members[0]], "votes": len(members)} for _, members in groups
            ],
        }
        self.chat.report("integrity", integrity)
        response["integrity"] = integrity  # also without any response stage
        record = self.chat.record
        chosen = self.branches[winner_index].attempts.chosen
        record.model_served = self.chat.request.model
        if chosen is not None:
            record.provider = chosen.provider.name
            record.upstream_model = chosen.deployment.upstream_model
        return response

    def shape(self, index: int, chunk: dict[str, Any]) -> dict[str, Any] | None:
        return None  # no winner before every candidate has ended

    def failed_chunk(self, index: int, error: GatewayError) -> dict[str, Any]:
        return {**self._identity, "choices": []}  # a failed candidate just has no vote

    def held(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        choice = response["choices"][0]
        message = choice.get("message") or {}
        delta = {k: v for k, v in message.items() if v is not None}
        return [
            {
                **self._identity,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}
                ],
            }
        ]

    def identity(self, assemblers: list[StreamAssembler]) -> dict[str, Any]:
        return dict(self._identity)
