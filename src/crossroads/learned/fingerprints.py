"""Fingerprints of the prompts a router was trained on, to tell when it is judged on them.

A router scored on its own training prompts looks far better than it is (the packaged one
reports 0.73 APGR on its training data, about 0.6 on prompts it never saw). The artifact keeps a
32-bit hash of every training prompt (whitespace-trimmed, BLAKE2b), sorted: about 4 bytes a
prompt, no prompt text, and a false match rate of about prompts / 2³² per evaluated prompt.
`crossroads router eval` reports the share of evaluated prompts found among them.

A hash is not a secret: whoever holds an artifact trained `--from-log` can test whether a
prompt they can guess (a short, common one) was among the rated traffic it learned from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["fingerprint", "fingerprints", "overlap"]

Hashes = npt.NDArray[np.uint32]


def fingerprint(prompt: str) -> int:
    """The 32-bit fingerprint of one prompt."""
    digest = hashlib.blake2b(prompt.strip().encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def fingerprints(prompts: Iterable[str]) -> Hashes:
    """Sorted, distinct fingerprints of `prompts` (what an artifact stores)."""
    return np.unique(np.array([fingerprint(p) for p in prompts], dtype=np.uint32))


def overlap(known: Hashes, prompts: Sequence[str]) -> int:
    """How many of `prompts` have a fingerprint in `known`."""
    if not len(prompts) or not len(known):
        return 0
    return int(np.isin(fingerprints_unsorted(prompts), known).sum())


def fingerprints_unsorted(prompts: Sequence[str]) -> Hashes:
    return np.array([fingerprint(p) for p in prompts], dtype=np.uint32)
