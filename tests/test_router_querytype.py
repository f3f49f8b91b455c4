"""The query-type label on prompts whose type nobody would dispute."""

from __future__ import annotations

import pytest

from crossroads.learned.querytype import QUERY_TYPES, classify, type_scores


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("Write a Python function that reverses a linked list.", "code"),
        ("```js\nconst x = [1, 2].map(n => n * 2);\n```\nWhy is x not [2, 4]?", "code"),
        ("def area(r):\n    return 3.14 * r ** 2\n\nAdd type hints.", "code"),
        ("Solve 3x + 5 = 20 for x.", "math"),
        ("Janet has 3 apples and buys 5 more. How many apples does she have now?", "math"),
        ("Compute the integral of x^2 from 0 to 3.", "math"),
        (
            "Summarize the following article in three bullet points: The council met…",
            "summarization",
        ),
        ("tl;dr of this thread please: …", "summarization"),
        ('Translate "good morning, my friend" into French.', "translation"),
        (
            "Extract all email addresses from the following text and return them as JSON.",
            "extraction",
        ),
        ("Write a haiku about autumn leaves.", "creative_writing"),
        ("Compose a short story about a lighthouse keeper who finds a map.", "creative_writing"),
        (
            "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? "
            "Explain step by step.",
            "reasoning",
        ),
        ("Statement 1 | Every group is abelian. Statement 2 | Z is a group.", "reasoning"),
        ("Who was the first president of the United States?", "knowledge"),
        (
            "What is the capital of Australia?\nA. Sydney\nB. Canberra\nC. Perth\nD. Hobart",
            "knowledge",
        ),
        ("hi! how are you today?", "chat"),
        ("Thanks, that helped a lot.", "chat"),
        ("", "chat"),
    ],
)
def test_clear_examples(prompt: str, label: str) -> None:
    assert classify(prompt) == label


def test_labels_are_known_and_deterministic() -> None:
    prompt = "Write a poem about a Python function that computes 2 + 2."
    first = classify(prompt)
    assert first in QUERY_TYPES
    assert all(classify(prompt) == first for _ in range(5))
    assert set(type_scores(prompt)) == set(QUERY_TYPES)


def test_ties_go_to_the_type_listed_first() -> None:
    # "code" (1.5 for the language) and "math" (1.5 for "how many") tie: code is listed first.
    scores = type_scores("In SQL, how many rows")
    assert scores["code"] == scores["math"] > 0
    assert classify("In SQL, how many rows") == "code"
