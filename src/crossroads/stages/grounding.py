"""Lexical and entity grounding: how much of an answer its context supports.

An answer that repeats what the conversation, the tool results or the retrieved passages
say is rarely a hallucination; one that brings names, numbers and phrases found nowhere in
them often is. `grounding_features` turns (context, question, answer) into a dozen numbers
— content-word, bigram and entity support, novelty, length, negation — and a small logistic
model over them (`grounding_model.npz`, trained on HaluEval by
benchmarks/quality/train_grounding.py with a fixed seed) turns those into a risk. The
token-overlap baseline (`overlap_risk`) is one of those numbers alone; the benchmark
measures both in the same run. Pure Python and numpy: ~0.1 ms per answer.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossroads.learned.logistic import sigmoid

__all__ = [
    "FEATURES",
    "GroundingModel",
    "Support",
    "grounding_features",
    "load_grounding_model",
    "overlap_risk",
    "sentences",
    "unsupported_claims",
]

Floats = npt.NDArray[np.float64]

_WORD = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")
_ENTITY = re.compile(r"\b(?:[A-Z][a-zA-Z]+|\d[\d,.]*)\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "they",
        "them",
        "his",
        "her",
        "their",
        "we",
        "you",
        "i",
        "me",
        "my",
        "your",
        "our",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "not",
        "no",
        "so",
        "than",
        "then",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "also",
        "very",
        "just",
        "about",
        "into",
        "over",
        "under",
        "more",
        "most",
        "some",
        "any",
        "all",
        "each",
        "other",
        "such",
        "only",
        "own",
        "same",
        "too",
        "s",
        "t",
        "don",
        "yes",
        "yeah",
        "oh",
        "well",
        "like",
        "know",
        "think",
        "really",
        "sure",
    ]
)
_NEGATION = frozenset(
    [
        "not",
        "no",
        "never",
        "n't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "wasn't",
        "aren't",
        "won't",
    ]
)
_FIRST_PERSON = frozenset(["i", "i'm", "i've", "i'd", "me", "my"])

FEATURES = (
    "content_support",
    "bigram_support",
    "entity_unsupported",
    "number_unsupported",
    "novel_share",
    "question_share",
    "log_novel_words",
    "log_unsupported_entities",
    "negation",
    "first_person",
    "worst_sentence",
    "token_support",
)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in _STOP]


def sentences(text: str) -> list[str]:
    """The answer's sentences, as autocorrect and evidence name them."""
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


@dataclass(frozen=True, slots=True)
class Support:
    """The context's vocabulary, built once per request and reused for every choice."""

    words: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    question: frozenset[str]
    length: int

    @classmethod
    def of(cls, context: Sequence[str], question: str) -> Support:
        words: list[str] = []
        for text in context:
            words += _words(text)
        return cls(
            frozenset(words),
            frozenset(itertools.pairwise(words)),
            frozenset(_words(question)),
            len(words),
        )

    def unsupported_entities(self, text: str) -> list[str]:
        found = []
        for match in _ENTITY.finditer(text):
            parts = _words(match.group())
            if parts and any(p not in self.words for p in parts):
                found.append(match.group())
        return found


def _share(items: Sequence[Hashable], pool: AbstractSet[Hashable]) -> float:
    return sum(1 for i in items if i in pool) / len(items) if items else 1.0


def grounding_features(support: Support, answer: str) -> list[float]:
    """The answer's grounding numbers, in `FEATURES` order."""
    words = _words(answer)
    content = _content(words)
    bigrams = list(itertools.pairwise(words))
    entities = [m.group() for m in _ENTITY.finditer(answer)]
    numbers = [e for e in entities if e[0].isdigit()]
    unsupported = support.unsupported_entities(answer)
    novel = [w for w in content if w not in support.words and w not in support.question]
    worst = 0.0
    for sentence in sentences(answer):
        own = _content(_words(sentence))
        if own:
            worst = max(worst, 1.0 - _share(own, support.words))
    return [
        _share(content, support.words),
        _share(bigrams, support.bigrams),
        len(unsupported) / len(entities) if entities else 0.0,
        sum(1 for n in numbers if n in unsupported) / len(numbers) if numbers else 0.0,
        len(novel) / len(content) if content else 0.0,
        _share(content, support.question),
        math.log1p(len(novel)),
        math.log1p(len(unsupported)),
        float(any(w in _NEGATION for w in words)),
        float(any(w in _FIRST_PERSON for w in words)),
        worst,
        _share(words, support.words),
    ]


def overlap_risk(support: Support, answer: str) -> float:
    """The baseline: the share of the answer's tokens the context does not contain."""
    return 1.0 - _share(_words(answer), support.words)


def unsupported_claims(support: Support, answer: str, limit: float = 0.5) -> list[str]:
    """Sentences whose content words the context mostly lacks, or that name an entity or
    number it never mentions: what autocorrect drops or asks the model to fix."""
    claims = []
    for sentence in sentences(answer):
        content = _content(_words(sentence))
        if not content:
            continue
        missing = 1.0 - _share(content, support.words)
        if missing > limit or support.unsupported_entities(sentence):
            claims.append(sentence)
    return claims


@dataclass(frozen=True, slots=True)
class GroundingModel:
    """Standardisation and logistic weights over `FEATURES`."""

    mean: Floats
    scale: Floats
    coef: Floats

    def risk(self, features: Sequence[float]) -> float:
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return float(sigmoid(np.asarray([x @ self.coef[1:] + self.coef[0]]))[0])

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, scale=self.scale, coef=self.coef, features=FEATURES)


_PACKAGED = Path(__file__).with_name("grounding_model.npz")


def load_grounding_model(path: str | None = None) -> GroundingModel:
    """The trained model (the packaged one unless `path` names another), read from disk."""
    with np.load(path or _PACKAGED) as data:
        if tuple(str(f) for f in data["features"]) != FEATURES:
            raise ValueError(f"{path or _PACKAGED}: trained on other features than {FEATURES}")
        return GroundingModel(data["mean"], data["scale"], data["coef"])
