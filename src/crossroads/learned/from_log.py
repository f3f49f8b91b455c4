"""Labelled rows from the gateway's own traffic: the request log joined with feedback.

Every request that was answered (status < 400), whose body was stored (not `store: false`)
and that someone rated with `POST /v1/feedback` becomes one `LabelledRow`: the prompt is the
text of its user messages, the model is the public model that answered, the score is the
latest feedback given, and cost and completion tokens are what the log recorded. Those rows
train the same router as the RouteLLM files do.

The prompt is the user's text only, because that is what the router learned from: RouteLLM's
prompts are single user turns, and a system prompt ("You are a helpful assistant") says
nothing about how hard the question is. `request_prompt` is that reading of a request's
messages; routing a live request must read it the same way, or it judges another prompt than
the one the router learned from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.learned.data import LabelledRow
from crossroads.providers.content import message_texts
from crossroads.storage.feedback_store import FeedbackStore

__all__ = ["LOG_SOURCE", "feedback_rows", "request_prompt"]

LOG_SOURCE = "request_log"  # `LabelledRow.source` of rows taken from the log


def request_prompt(messages: Any) -> str | None:
    """The texts of the user messages, joined by blank lines; None when there is no text.

    Images, audio and files in a message are skipped: the router judges text only.
    """
    if not isinstance(messages, list):
        return None
    texts: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = [
                part
                for part in content
                if isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ]
        elif not isinstance(content, str):
            continue
        texts += message_texts(content, f"messages[{index}]")
    return "\n\n".join(texts) or None


async def feedback_rows(engine: AsyncEngine, *, since: datetime | None = None) -> list[LabelledRow]:
    """One row per rated, answered request in the log at `engine`, oldest first.

    `since` keeps requests that arrived at or after it (naive datetimes are UTC). Requests
    without a stored body or without any user text are skipped.
    """
    rows = []
    for answer in await FeedbackStore(engine).rated_answers(since=since):
        prompt = request_prompt(answer.request.get("messages"))
        if prompt is None:
            continue
        tokens = answer.completion_tokens
        rows.append(
            LabelledRow(
                prompt=prompt,
                model=answer.model_served,
                score=answer.score,
                cost=answer.cost,
                completion_tokens=None if tokens is None else float(tokens),
                source=LOG_SOURCE,
            )
        )
    return rows
