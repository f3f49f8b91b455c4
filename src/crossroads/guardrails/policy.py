"""The operator's own rules: denied words and phrases, regular expressions, topics.

Deny entries match case-insensitively on word boundaries ("drop table" does not match
"backdrop tablet"); regexes are the operator's, compiled once per check; a topic triggers when
at least `min_hits` of its distinct keywords occur. Every finding is a `Detection` with its
offsets and score 1.0 — rules are certain about what they match.
"""

from __future__ import annotations

import re
from functools import lru_cache

from crossroads.guardrails.config import PolicyCheck
from crossroads.guardrails.results import Detection

__all__ = ["evaluate_policy"]


@lru_cache(maxsize=512)
def _phrase(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def evaluate_policy(check: PolicyCheck, text: str) -> list[Detection]:
    """Every rule of `check` that `text` breaks, sorted by position."""
    found: list[Detection] = []
    for phrase in check.deny:
        if phrase.strip():
            found += [
                Detection("deny", m.start(), m.end(), 1.0) for m in _phrase(phrase).finditer(text)
            ]
    for i, pattern in enumerate(check.regexes):
        found += [
            Detection(f"regex:{i}", m.start(), m.end(), 1.0)
            for m in _regex(pattern).finditer(text)
            if m.end() > m.start()
        ]
    for topic in check.topics:
        hits: dict[str, re.Match[str]] = {}
        for keyword in topic.keywords:
            match = _phrase(keyword).search(text) if keyword.strip() else None
            if match is not None:
                hits[keyword.lower()] = match
        if len(hits) >= topic.min_hits:
            found += [
                Detection(f"topic:{topic.name}", m.start(), m.end(), 1.0) for m in hits.values()
            ]
    return sorted(found, key=lambda d: (d.start, d.end))
