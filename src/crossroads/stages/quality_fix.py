"""Autocorrect: what happens to an answer whose risk is above the threshold.

`drop` removes the sentences the context does not support (no upstream call; the answer
keeps what it can back up). `regenerate` asks the same model again, with the conversation,
its own answer and the claims that lack support named, to rewrite the answer from the
context alone — one side call, billed. Either way the new answer is scored again and kept
only if its risk is lower; the report says what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossroads.pipeline.side_calls import answer_text
from crossroads.stages.grounding import sentences, unsupported_claims
from crossroads.stages.quality_risk import Assessor

__all__ = ["Correction", "autocorrect"]

_REWRITE = (
    "Your previous answer contains claims that the conversation does not support:\n{claims}\n"
    "Rewrite the answer using only information stated in the conversation above. Leave out "
    "anything you cannot support from it; if nothing can be supported, say you do not know."
)


@dataclass(slots=True)
class Correction:
    text: str
    mode: str
    removed: list[str]


async def autocorrect(
    assessor: Assessor, mode: str, answer: str, model: str, claims: list[str]
) -> Correction | None:
    """A corrected answer, or None when there is nothing to correct."""
    claims = claims or unsupported_claims(assessor.support, answer)
    if mode == "drop":
        if not claims:
            return None
        kept = [s for s in sentences(answer) if s not in claims]
        text = " ".join(kept) if kept else "I cannot answer that from the information given."
        return Correction(text, "drop", claims)
    if assessor.side is None:
        return None
    listed = "\n".join(f"- {c}" for c in claims) or "- (the answer as a whole)"
    messages: list[dict[str, Any]] = [
        *assessor.chat.body["messages"],
        {"role": "assistant", "content": answer},
        {"role": "user", "content": _REWRITE.format(claims=listed)},
    ]
    response = await assessor.side.complete(
        assessor.chat, assessor.bill, "quality", model, messages, temperature=0
    )
    text = answer_text(response)
    return Correction(text, "regenerate", claims) if text and text != answer else None
