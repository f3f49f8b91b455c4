"""What kind of request a prompt is: code, math, reasoning, creative writing, … .

The label goes into the response's `routing` block and config rules can match on it, so it must
be cheap (it runs on every routed request), deterministic (the same prompt always gets the same
label, on every replica and after every restart) and explainable (a person reading the prompt
should agree with it). That rules out a learned model: each type is a handful of weighted
regular expressions, the highest total wins, ties go to the type listed first, and a prompt
that matches nothing is `chat`.
"""

from __future__ import annotations

import re
from typing import Final, get_args

from crossroads.config import QueryType

__all__ = ["QUERY_TYPES", "classify", "type_scores"]

# The labels, in tie-break order; config rules are validated against the same `Literal`.
QUERY_TYPES: Final[tuple[str, ...]] = get_args(QueryType)

_PREFIX: Final = 2000  # characters read: the request itself is stated early
_I = re.MULTILINE  # patterns are lower case and run on lower-cased text (much faster)

# (pattern, weight) per type. Weights: 3 = the request says so outright ("summarize this"),
# 2 = strong evidence (a code fence, an equation), 1 = a hint that needs company.
_RULES: Final[dict[str, tuple[tuple[re.Pattern[str], float], ...]]] = {
    "code": (
        (re.compile(r"```|^\s*(def|class|import|from \S+ import|#include|public static)\b", _I), 3),
        (
            re.compile(
                r"\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|bash|regex|html|css"
                r"|json schema|api endpoint)\b",
                _I,
            ),
            1.5,
        ),
        (
            re.compile(
                r"\b(function|compile[sd]?|debug|refactor|stack ?trace|exception|runtime error"
                r"|unit tests?|code|script|algorithm|implement)\b",
                _I,
            ),
            1,
        ),
        (re.compile(r"[{};]\s*$|=>|->|\w+\([^)]*\)\s*[{:]", re.MULTILINE), 1),
        (re.compile(r"\bselect\b.+\bfrom\b", _I), 1.5),
    ),
    "math": (
        (
            re.compile(
                r"\b(solve|equation|integral|derivative|probability|calculate|compute|simplify"
                r"|factori[sz]e|polynomial|matrix|theorem|prove that)\b",
                _I,
            ),
            2,
        ),
        (re.compile(r"\d\s*[-+*/^×÷=]\s*\d|\\frac|\\sqrt|[∫∑√π≤≥]|\bx\^\d"), 2),
        (re.compile(r"\b(how many|how much|what is the (value|sum|product|remainder))\b", _I), 1.5),
        (re.compile(r"\d+(\.\d+)?\s*(%|percent|dollars|\$)|\$\s?\d", _I), 1),
        (re.compile(r"\b(average|total|ratio|per cent|fraction|digits?)\b", _I), 0.5),
    ),
    "summarization": (
        (re.compile(r"\b(summari[sz]e|summary|tl;?dr|key (points|takeaways)|in brief)\b", _I), 3),
        (re.compile(r"\b(condense|shorten|main ideas?|gist)\b", _I), 1.5),
    ),
    "translation": (
        (re.compile(r"\btranslat(e|ion|ed)\b", _I), 3),
        (
            re.compile(
                r"\b(in|into|to) (english|french|german|spanish|italian|portuguese|chinese"
                r"|japanese|korean|russian|arabic|hindi|dutch)\b",
                _I,
            ),
            1.5,
        ),
    ),
    "extraction": (
        (
            re.compile(
                r"\b(extract|pull out|list (all|every|the)|find all|identify (all|the)"
                r"|named entities|parse)\b",
                _I,
            ),
            2.5,
        ),
        (re.compile(r"\b(as|in|into) (json|a table|csv|yaml|key[- ]value)\b", _I), 1.5),
        (re.compile(r"\b(from|in) (the|this) (following )?(text|passage|document|email)\b", _I), 1),
    ),
    "creative_writing": (
        (
            re.compile(
                r"\b(write|compose|draft|create)\b[^.?!\n]{0,40}\b(poem|story|song|lyrics|haiku"
                r"|limerick|sonnet|essay|script|screenplay|fable|tale|novel|blog post|speech)\b",
                _I,
            ),
            3,
        ),
        (
            re.compile(
                r"\b(poem|short story|haiku|rhym\w*|fiction|imagine|once upon a time)\b", _I
            ),
            1.5,
        ),
        (re.compile(r"\b(creative|whimsical|in the style of)\b", _I), 1),
    ),
    "reasoning": (
        (
            re.compile(
                r"\b(statement 1|scenario 1|logically|deduce|infer|implies|premises?"
                r"|conclusion|argument|fallacy|puzzle|riddle|step by step)\b",
                _I,
            ),
            2,
        ),
        (re.compile(r"\b(why|explain|reason|justify|compare|what would happen)\b", _I), 1),
        (re.compile(r"\bwhich of the following\b", _I), 1),
    ),
    "knowledge": (
        (re.compile(r"^\s*\(?[a-d][.)]\s+\S", _I), 1),
        (
            re.compile(
                r"^\s*(what|who|when|where|which)\b|\b(what is|who was|who is|when did"
                r"|where is|define|definition of)\b",
                _I,
            ),
            1,
        ),
        (re.compile(r"\b(according to|is known as|refers to|is called)\b", _I), 1),
    ),
    "chat": (
        (
            re.compile(
                r"^\s*(hi|hello|hey|thanks|thank you|good (morning|evening)|how are you)\b", _I
            ),
            3,
        ),
        (re.compile(r"\b(you|your)\b.*\?\s*$|\b(can you|could you|would you)\b", _I), 0.5),
    ),
}


def type_scores(prompt: str) -> dict[str, float]:
    """Each query type's total rule weight for this prompt (0 when no rule matches)."""
    text = prompt[:_PREFIX].lower()
    return {
        label: sum(weight for pattern, weight in rules if pattern.search(text))
        for label, rules in _RULES.items()
    }


def classify(prompt: str) -> str:
    """The query type of a prompt: the type with the highest rule weight, else `chat`."""
    scores = type_scores(prompt)
    best = max(QUERY_TYPES, key=lambda label: scores[label])  # first of equals wins
    return best if scores[best] > 0 else "chat"
