"""Train/test assignment: a seeded hash of the row's prompt, not a random draw.

The same prompt always lands in the same split for a given seed, so repeated prompts never
leak from train into test, adding rows never moves rows already assigned, and the split is
the same on every machine and backend.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson

__all__ = ["Split", "assign_split", "prompt_hash"]

Split = Literal["train", "test"]


def prompt_hash(messages: Any, tools: Any = None) -> str:
    """A stable digest of a row's input (messages and tools), keys sorted."""
    payload = orjson.dumps([messages, tools], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(payload).hexdigest()[:32]


def assign_split(digest: str, *, seed: int, test_fraction: float) -> Split:
    """'test' for about `test_fraction` of prompts, chosen by `seed`."""
    if test_fraction <= 0:
        return "train"
    point = hashlib.sha256(f"{seed}:{digest}".encode()).digest()
    return "test" if int.from_bytes(point[:8], "big") / 2**64 < test_fraction else "train"
