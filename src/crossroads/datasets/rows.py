"""A training row, and how one is made from a logged exchange or an uploaded JSONL line.

A row keeps the input (messages and tools) apart from the answer (`output`, one assistant
message) because every format needs them apart: SFT joins them, preference formats pair an
answer with another for the same input. `rejected` holds answers this one was preferred over
(a fan-out's other choices, or an uploaded pair's non-preferred output); `score` is the
latest feedback on the logged answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossroads.datasets.formats import check_openai_chat, check_openai_dpo
from crossroads.storage.records import LogRecord

__all__ = ["RowInput", "row_from_log", "row_from_upload"]

# The metadata key naming the fan-out choice a reviewer preferred (`PATCH /v1/logs/{id}`).
PREFERRED_CHOICE = "preferred_choice"
_MESSAGE_KEYS = ("role", "content", "tool_calls", "name", "tool_call_id", "refusal")


@dataclass(slots=True)
class RowInput:
    messages: list[dict[str, Any]]
    output: dict[str, Any] | None
    tools: list[dict[str, Any]] | None = None
    rejected: list[dict[str, Any]] | None = None
    score: float | None = None
    source_log_id: str | None = None


def _assistant(message: Any) -> dict[str, Any] | None:
    """The message as a training row keeps it: the format's fields only, no nulls."""
    if not isinstance(message, dict):
        return None
    kept = {k: message[k] for k in _MESSAGE_KEYS if message.get(k) is not None}
    kept["role"] = "assistant"
    if "content" not in kept and "tool_calls" not in kept:
        return None
    return kept


def _input_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": "user", "content": str(message)}
    return {k: message[k] for k in _MESSAGE_KEYS if message.get(k) is not None}


def row_from_log(record: LogRecord, score: float | None = None) -> RowInput | None:
    """The row a successful logged exchange makes; None when it has no usable answer.

    A fan-out answer (several choices) keeps the choice named by the record's
    `metadata.preferred_choice` (else the first) and the others as `rejected`.
    """
    request, response = record.request, record.response
    if record.status_code >= 400 or not isinstance(request, dict) or not isinstance(response, dict):
        return None
    messages = request.get("messages")
    choices = response.get("choices")
    if not isinstance(messages, list) or not messages or not isinstance(choices, list):
        return None
    answers = [_assistant(c.get("message")) if isinstance(c, dict) else None for c in choices]
    picked = 0
    preferred = (record.metadata or {}).get(PREFERRED_CHOICE)
    if isinstance(preferred, str) and preferred.isdigit() and int(preferred) < len(answers):
        picked = int(preferred)
    output = answers[picked] if answers else None
    if output is None:
        return None
    others = [a for i, a in enumerate(answers) if i != picked and a is not None and a != output]
    tools = request.get("tools")
    return RowInput(
        messages=[_input_message(m) for m in messages],
        output=output,
        tools=tools if isinstance(tools, list) and tools else None,
        rejected=others or None,
        score=score,
        source_log_id=record.id,
    )


def row_from_upload(line: Any) -> RowInput:
    """A row from one JSONL line in OpenAI chat SFT or preference (DPO) format.

    Raises ValueError naming what is wrong with the line."""
    if isinstance(line, dict) and "input" in line:
        problems = check_openai_dpo(line)
        if problems:
            raise ValueError("; ".join(problems[:3]))
        given = line["input"]
        return RowInput(
            messages=list(given["messages"]),
            tools=given.get("tools") or None,
            output=line["preferred_output"][0],
            rejected=[line["non_preferred_output"][0]],
        )
    problems = check_openai_chat(line)
    if problems:
        raise ValueError("; ".join(problems[:3]))
    messages = list(line["messages"])
    last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    if last == 0:
        raise ValueError("messages need at least one message before the assistant's answer")
    return RowInput(
        messages=messages[:last], output=messages[last], tools=line.get("tools") or None
    )
