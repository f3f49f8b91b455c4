"""The first layer against prompt injection: phrases that almost never occur innocently.

Each rule names a technique (overriding earlier instructions, asking for the system prompt,
switching persona to an unrestricted one, forging a conversation turn). A rule is written
narrowly enough that ordinary prompts and long documents do not match it — the benchmark's
benign set includes both — and anything subtler is left to the classifier. Rules run on
normalised text (see `injection_features.normalize`), so case, spacing and Unicode look-alikes
do not evade them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RULES", "InjectionRule", "match_rules"]


@dataclass(frozen=True, slots=True)
class InjectionRule:
    name: str
    pattern: re.Pattern[str]
    score: float


_PREVIOUS = r"(?:all |any |the |your |my |these |those |every )*(?:previous|prior|above|preceding|earlier|foregoing|initial|original|system|developer)"
_INSTRUCTIONS = r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|context|commands?|guidance|programming|constraints)"


def _rule(name: str, pattern: str, score: float = 0.95) -> InjectionRule:
    return InjectionRule(name, re.compile(pattern), score)


RULES: tuple[InjectionRule, ...] = (
    _rule(
        "override_instructions",
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|neglect)\b(?: \w+){{0,3}}? {_PREVIOUS} {_INSTRUCTIONS}\b"
        # A manual's "ignore the above instructions if you use Windows" is not an attack.
        r"(?! (?:if|when|unless|for|on|in case)\b)",
    ),
    _rule(
        "ignore_and_instead",
        r"\b(?:ignore|disregard) (?:the |this |that )?(?:above|previous|preceding)\b"
        # "ignore the above warning and carry on" is advice from a manual.
        r"(?! (?:warnings?|errors?|messages?|output|logs?|steps?|sections?|examples?|notes?)\b)"
        r".{0,80}\b(?:and|instead|just)\b",
        0.9,
    ),
    _rule(
        "reveal_system_prompt",
        r"\b(?:reveal|show|print|output|repeat|display|leak|tell me|give me|what (?:is|are|were))\b"
        r"(?: \w+){0,4} (?:(?:your|the) (?:system|hidden|secret) (?:prompt|instructions?|message)|"
        # "the original instructions" of a flat-pack bookcase are not the model's.
        r"your (?:initial|original) (?:prompt|instructions?)|the (?:initial|original) prompt)",
        0.9,
    ),
    _rule(
        "unrestricted_persona",
        r"\b(?:dan|do anything now|developer mode|jailbreak(?:ed)? mode|god mode|unfiltered mode|"
        r"evil (?:confidant|assistant|bot)|anti-?dan)\b.{0,120}\b(?:no|without|free (?:of|from)|"
        r"not bound by|break|broken free|any) (?:all |any |the )?(?:restrictions?|rules|limits|limitations|filters?|"
        r"guidelines|polic(?:y|ies)|censorship|ethics)",
    ),
    _rule(
        "no_restrictions",
        r"\b(?:you are|you're|act as|pretend to be|from now on,? you(?: are| will)?)\b.{0,80}\b(?:no|without|free from|"
        r"not bound by) (?:any )?(?:restrictions|rules|limits|limitations|filters|guidelines|ethical|"
        r"moral|content polic)",
        0.9,
    ),
    _rule(
        "enable_mode",
        r"\b(?:enable|activate|enter|switch to|turn on)\b(?: \w+){0,2} (?:dan|jailbreak|god|"
        r"unrestricted|unfiltered|uncensored) mode\b",
        0.9,
    ),
    # "Developer mode" is an Android and browser setting: only the jailbreak's own phrasing
    # (the model itself "with developer mode enabled", or told it is in it) counts.
    _rule(
        "developer_mode_persona",
        r"\b(?:with developer mode (?:enabled|activated|on)|developer mode output|"
        r"you (?:are|will be|will act|will now be) (?:now )?(?:in|as if in|with) developer mode)\b",
        0.9,
    ),
    # A forged turn opens a system or assistant turn. Documents about prompt formats name
    # the user-turn and end markers (`[INST]`, `<|im_end|>`, `### Instruction:`) all the time,
    # so those alone are left to the classifier.
    _rule(
        "forged_turn",
        r"(?:^|[\s>])(?:<\|im_start\|> ?(?:system|assistant)\b|<<sys>>|<\|(?:system|assistant)\|>|"
        r"### system:)",
        0.85,
    ),
    _rule(
        "new_instructions",
        r"\b(?:new|updated|real|actual|important) (?:instructions?|task|directive)s?:? ?(?:from now on|"
        r"you (?:must|will|are to)|ignore|disregard)",
        0.85,
    ),
)


def match_rules(normalized: str) -> list[tuple[InjectionRule, int, int]]:
    """Every rule that matches, with the span of its first match in the normalised text."""
    hits: list[tuple[InjectionRule, int, int]] = []
    for rule in RULES:
        found = rule.pattern.search(normalized)
        if found is not None:
            hits.append((rule, found.start(), found.end()))
    return hits
