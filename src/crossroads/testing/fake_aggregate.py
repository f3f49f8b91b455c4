"""A fake mixture-of-agents aggregator: it goes with the crowd, and says so.

A real aggregator reads the proposals and writes a better answer; how much better is a
property of the model, which no fake has. This one does something simple and stated, so a
benchmark of mixtures measures the gateway's plumbing and the arithmetic of voting, never a
model's judgement: it reads the numbered proposals (`[k] text` lines) from the request's
system messages, and if one text is shown at least twice and more often than any other, it
answers that text; otherwise (no proposals, a single one, a tie) it answers its own reply.
A later layer's proposer with the `aggregate` directive behaves the same way on the previous
layer's proposals.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

__all__ = ["aggregate"]

_PROPOSAL = re.compile(r"^\[(\d+)\] (.+)$", re.MULTILINE)


def aggregate(messages: list[Any], own: str) -> str:
    """The majority proposal in `messages`' system text, else `own`."""
    shown: list[str] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            content = message.get("content")
            if isinstance(content, str):
                shown += [m.group(2).strip() for m in _PROPOSAL.finditer(content)]
    ranked = Counter(shown).most_common(2)
    if not ranked or ranked[0][1] < 2 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return own
    return ranked[0][0]
