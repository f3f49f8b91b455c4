"""Which of a Messages request's `stop_sequences` ended the answer.

Anthropic's answer names the stop sequence it stopped on (`stop_reason: "stop_sequence"`,
`stop_sequence: "<which>"`); OpenAI's finish reason is "stop" either way. The rule, in
order:

1. The upstream said which: an anthropic-dialect upstream's own `stop_sequence`, which the
   dialect carries on the chat choice as `stop_reason`, the field OpenAI-compatible servers
   such as vLLM report it in. Taken when it is one of the request's sequences.
2. The answer's text ends with one of them (a server that keeps the stop string).
3. Otherwise none: an upstream that strips the stop string and does not say which cannot
   be told from one that ended its turn, so the answer says `end_turn`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["matched_stop"]


def matched_stop(choice: Mapping[str, Any], text: str, stops: Sequence[str] | None) -> str | None:
    """The stop sequence that ended `choice` (whose answer text is `text`), if known."""
    if not stops or choice.get("finish_reason") != "stop":
        return None
    reported = choice.get("stop_reason")
    if isinstance(reported, str) and reported in stops:
        return reported
    return next((stop for stop in stops if stop and text.endswith(stop)), None)
