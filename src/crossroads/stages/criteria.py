"""Criteria: named LLM-judge evaluations of each answer, defined once in config.

A criterion (`[quality.criteria.<name>]`) is a prompt saying what a passing answer does, a
judge model, and a kind: `pass_fail` (the judge says PASS or FAIL) or `score` (0–1, passing
at `pass_score`). A request names the criteria it wants (`criteria: ["concise"]`); each
choice gets `criteria_results` and the judges' cost is `usage.criteria`. A judge that fails
or answers unreadably gives status `error` — the answer itself is never held back.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.side_calls import SideBill, SideCalls, answer_text
from crossroads.protocol.errors import GatewayError
from crossroads.quality_config import CriterionConfig
from crossroads.stages.quality_risk import parse_probability

__all__ = ["evaluate_criteria"]

_VERDICT = re.compile(r"\b(PASS|FAIL)\b", re.IGNORECASE)
_INSTRUCTIONS = {
    "pass_fail": "Reply PASS or FAIL on the first line, then one sentence saying why.",
    "score": "Reply with a score from 0 to 1 on the first line, then one sentence saying why.",
}


def _transcript(messages: list[Any]) -> str:
    lines = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            lines.append(f"{message.get('role', 'user')}: {message['content']}")
    return "\n".join(lines)


async def _judge(
    chat: PreparedChat,
    side: SideCalls,
    bill: SideBill,
    name: str,
    criterion: CriterionConfig,
    answer: str,
) -> dict[str, Any]:
    messages = [
        {
            "role": "system",
            "content": f"You evaluate an assistant's answer against one criterion: "
            f"{criterion.prompt}\n{_INSTRUCTIONS[criterion.kind]}",
        },
        {
            "role": "user",
            "content": f"Conversation:\n{_transcript(chat.body['messages'])}\n\n"
            f"Answer to evaluate:\n{answer}",
        },
    ]
    result: dict[str, Any] = {"name": name, "model": criterion.model}
    try:
        response = await side.complete(
            chat, bill, "criteria", criterion.model, messages, temperature=0
        )
    except GatewayError as exc:
        return {**result, "status": "error", "score": None, "explanation": exc.message}
    verdict = answer_text(response).strip()
    first, _, rest = verdict.partition("\n")
    explanation = (rest.strip() or first)[:500]
    if criterion.kind == "pass_fail":
        match = _VERDICT.search(first) or _VERDICT.search(verdict)
        if match is None:
            return {**result, "status": "error", "score": None, "explanation": verdict[:500]}
        passed = match.group(1).upper() == "PASS"
        score = 1.0 if passed else 0.0
    else:
        parsed = parse_probability(first) or parse_probability(verdict)
        if parsed is None:
            return {**result, "status": "error", "score": None, "explanation": verdict[:500]}
        score, passed = parsed, parsed >= criterion.pass_score
    return {
        **result,
        "status": "pass" if passed else "fail",
        "score": score,
        "explanation": explanation,
    }


async def evaluate_criteria(
    chat: PreparedChat,
    side: SideCalls,
    bill: SideBill,
    criteria: dict[str, CriterionConfig],
    response: dict[str, Any],
) -> None:
    """Judge every choice on every criterion (concurrently); results go on the choices."""
    jobs = []
    targets = []
    for choice in response.get("choices") or ():
        content = (choice.get("message") or {}).get("content")
        if not isinstance(content, str):
            continue
        for name, criterion in criteria.items():
            jobs.append(_judge(chat, side, bill, name, criterion, content))
            targets.append(choice)
    results = await asyncio.gather(*jobs)
    for choice in response.get("choices") or ():
        choice.pop("criteria_results", None)
    for choice, result in zip(targets, results, strict=True):
        choice.setdefault("criteria_results", []).append(result)
