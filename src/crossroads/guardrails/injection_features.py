"""Hashed n-gram features for the injection classifier, shared by training and inference.

The classifier is a logistic model over a fixed-size hashed vector, so the shipped artifact is
one weight array and this module is the whole of its "tokenizer". Text is normalised first
(Unicode compatibility forms, zero-width and control characters dropped, lower case, spaces
collapsed) so that homoglyph and spacing tricks land on the same features as the plain text.
Features: word unigrams and bigrams (CRC-32 of the word, stable across processes, unlike
`hash`) and character 3- to 5-grams (a polynomial rolling hash computed with numpy), each
counted once per window, the vector scaled to unit length.

Long texts are scored per window (`WINDOW_CHARS`, half-overlapping) and the text's score is the
highest window's: an instruction buried in the middle of a long document is not diluted by
the document around it. `FEATURE_VERSION` is stored in the artifact; a mismatch refuses to load.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib

import numpy as np
import numpy.typing as npt

__all__ = [
    "FEATURE_VERSION",
    "N_FEATURES",
    "WINDOW_CHARS",
    "hashed_features",
    "normalize",
    "windows",
]

FEATURE_VERSION = 1
N_FEATURES = 1 << 18
WINDOW_CHARS = 600
_STRIDE = WINDOW_CHARS // 2
_CHAR_NGRAMS = (3, 4, 5)
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff\u00ad]")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9]")
_MASK = N_FEATURES - 1
_MULTIPLIER = np.uint64(0x100000001B3)


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, lower case, runs of whitespace as one space."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    return _SPACES.sub(" ", text.lower()).strip()


def windows(normalized: str) -> list[str]:
    """Half-overlapping windows of `WINDOW_CHARS`, cut at spaces; one window for short text."""
    if len(normalized) <= WINDOW_CHARS:
        return [normalized]
    result: list[str] = []
    start = 0
    while start < len(normalized):
        end = min(start + WINDOW_CHARS, len(normalized))
        if end < len(normalized):
            space = normalized.rfind(" ", start + _STRIDE, end)
            end = space if space > start else end
        result.append(normalized[start:end])
        if end >= len(normalized):
            break
        next_start = normalized.find(" ", start + _STRIDE, end)
        start = next_start + 1 if next_start != -1 else start + _STRIDE
    return result


def _char_ngram_ids(window: str) -> npt.NDArray[np.int64]:
    codes = np.frombuffer(window.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts: list[npt.NDArray[np.uint64]] = []
    for n in _CHAR_NGRAMS:
        if len(codes) < n:
            continue
        h = np.full(len(codes) - n + 1, np.uint64(n * 0x9E3779B1), dtype=np.uint64)
        for k in range(n):
            h = (h ^ codes[k : len(codes) - n + 1 + k]) * _MULTIPLIER
        parts.append(h)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    joined = np.concatenate(parts)
    return ((joined >> np.uint64(20)) & np.uint64(_MASK)).astype(np.int64)


def _word_ngram_ids(window: str) -> npt.NDArray[np.int64]:
    words = _WORD.findall(window)
    grams = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]
    ids = [zlib.crc32(g.encode()) & _MASK for g in grams]
    return np.asarray(ids, dtype=np.int64)


def hashed_features(window: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Sparse unit-length feature vector of one normalised window: (indices, values)."""
    ids = np.unique(np.concatenate([_char_ngram_ids(window), _word_ngram_ids(window)]))
    if len(ids) == 0:
        return ids, np.zeros(0, dtype=np.float32)
    values = np.full(len(ids), 1.0 / np.sqrt(len(ids)), dtype=np.float32)
    return ids, values
