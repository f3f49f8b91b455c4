"""Seeded question pairs for the semantic cache: paraphrases (should hit) and near misses
(must not). Templates × entities, drawn with a fixed seed, so every run scores the same set.

A paraphrase pair asks the same thing in other words (and sometimes other case or
punctuation); a near miss keeps the words and changes what is asked about: another entity,
another number, or both written in lower case.
"""

from __future__ import annotations

import random

__all__ = ["near_misses", "paraphrases"]

# (stored question, paraphrases of it); `{x}` is an entity, `{n}` a number.
TEMPLATES: list[tuple[str, list[str]]] = [
    (
        "What is the population of {x}?",
        [
            "How many people live in {x}?",
            "what is the population of {x}",
            "Population of {x}?",
            "Tell me the population of {x}.",
            "What's the population of {x}?",
        ],
    ),
    (
        "What is the capital of {x}?",
        [
            "Which city is the capital of {x}?",
            "capital of {x}?",
            "Tell me the capital city of {x}.",
            "What's the capital of {x}",
        ],
    ),
    (
        "Who founded {x}?",
        [
            "Who was the founder of {x}?",
            "who founded {x}",
            "Who started {x}?",
            "Tell me who founded {x}.",
        ],
    ),
    (
        "How do I reset my {x} password?",
        [
            "How can I reset my {x} password?",
            "how do i reset my {x} password",
            "Reset {x} password: how?",
            "What are the steps to reset my {x} password?",
        ],
    ),
    (
        "What is the weather in {x} today?",
        [
            "How is the weather in {x} today?",
            "what's the weather in {x} today",
            "Today's weather in {x}?",
            "Weather in {x} today?",
        ],
    ),
    (
        "What happened in {x} in {n}?",
        [
            "What happened in {x} in the year {n}?",
            "what happened in {x} in {n}",
            "Tell me what happened in {x} in {n}.",
            "What events happened in {x} in {n}?",
        ],
    ),
    (
        "Summarise the history of {x}.",
        [
            "Give me a summary of the history of {x}.",
            "summarize the history of {x}",
            "Summarize {x}'s history.",
            "Can you summarise the history of {x}?",
        ],
    ),
    (
        "What is {n} times {m}?",
        [
            "What's {n} times {m}?",
            "what is {n} times {m}",
            "Calculate {n} times {m}.",
            "What is {n} multiplied by {m}?",
        ],
    ),
]

ENTITIES = [
    "Paris",
    "Lyon",
    "Berlin",
    "Munich",
    "Tokyo",
    "Osaka",
    "Madrid",
    "Seville",
    "Rome",
    "Milan",
    "Toronto",
    "Vancouver",
    "Sydney",
    "Melbourne",
    "Cairo",
    "Lagos",
    "Lima",
    "Quito",
    "France",
    "Germany",
    "Japan",
    "Spain",
    "Italy",
    "Canada",
    "Brazil",
    "Kenya",
    "Norway",
    "Sweden",
    "Google",
    "Microsoft",
    "Netflix",
    "Spotify",
    "Amazon",
    "Nvidia",
    "Tesla",
    "Adobe",
    "Dropbox",
    "Slack",
    "Zoom",
    "GitHub",
]


def _fill(text: str, x: str, n: int, m: int) -> str:
    return text.format(x=x, n=n, m=m)


def paraphrases(count: int, seed: int = 17) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        stored, variants = rng.choice(TEMPLATES)
        x, n, m = rng.choice(ENTITIES), rng.randint(1900, 2024), rng.randint(2, 99)
        out.append((_fill(stored, x, n, m), _fill(rng.choice(variants), x, n, m)))
    return out


def near_misses(count: int, seed: int = 18) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        stored, variants = rng.choice(TEMPLATES)
        asked = stored if i % 2 == 0 else rng.choice(variants)
        x, y = rng.sample(ENTITIES, 2)
        n, m = rng.randint(1900, 2024), rng.randint(2, 99)
        n2 = n + rng.choice([-10, -1, 1, 10])
        if "{n}" in stored and ("{x}" not in stored or rng.random() < 0.5):
            pair = (_fill(stored, x, n, m), _fill(asked, x, n2, m))  # another number
        else:
            pair = (_fill(stored, x, n, m), _fill(asked, y, n, m))  # another entity
        if i % 5 == 4:
            pair = (pair[0].lower(), pair[1].lower())  # names without capitals
        out.append(pair)
    return out
