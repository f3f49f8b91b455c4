"""Prompt features that say how hard a prompt is, whatever its subject.

The router must judge prompts about subjects it never saw in training, so the features describe
the *shape* of the task, not its vocabulary: how long it is, how much arithmetic it holds, how
many steps a word problem chains, whether it asks about two statements at once, how long and
how alike the answer options are, plus the query type. Word-level features (TF-IDF) and
embeddings of the words were measured and generalise worse to unseen subjects (see
`benchmarks/router/README.md`), so there are none.

Every feature is a plain float computed from the text with a few regular expressions, in well
under a millisecond; `FEATURE_NAMES` is stored in trained artifacts so that an artifact built by
another version of this module is refused rather than silently misread.
"""

from __future__ import annotations

import math
import re
from typing import Final

import numpy as np
import numpy.typing as npt

from crossroads.learned.querytype import QUERY_TYPES, classify

__all__ = ["FEATURE_NAMES", "prompt_features"]

_OPTION = re.compile(r"^\s*\(?([A-J])[.)]\s?(.*)$", re.MULTILINE)
_FIRST_OPTION = re.compile(r"^\s*\(?A[.)]", re.MULTILINE)
_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.,]\d+)*(?:/\d+)?")
_MATH_SYMBOL = re.compile(r"[=+*/^<>≤≥√π∑∫×÷±∞]|\\frac|\\sqrt|\$")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_ROMAN_ITEMS = re.compile(r"\bI{1,3}\.|\bIV\.")
_NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST)\b")
_COMPUTE = re.compile(
    r"\b(calculate|compute|how many|how much|what is the value|find the|solve)\b", re.IGNORECASE
)
_PERCENT = re.compile(r"%|percent", re.IGNORECASE)
_MONEY = re.compile(r"\$\s?\d")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_STEP_WORD = re.compile(
    r"\b(each|every|per|twice|thrice|half|double|triple|times|remaining|left|rest|more than"
    r"|less than|fewer|total|altogether|combined|after|then|if)\b",
    re.IGNORECASE,
)
_FRACTION = re.compile(r"\d+/\d+|\b(half|third|quarter|fifth)\b", re.IGNORECASE)
_UNIT = re.compile(
    r"\b(hours?|minutes?|seconds?|days?|weeks?|months?|years?|miles?|km|meters?|feet|inches"
    r"|pounds?|kg|grams?|liters?|gallons?|dollars?|cents?)\b",
    re.IGNORECASE,
)

_SHAPE_FEATURES: Final = (
    "log_chars",
    "log_stem_chars",
    "log_words",
    "log_lines",
    "log_numbers",
    "log_stem_numbers",
    "digit_share",
    "log_math_symbols",
    "has_options",
    "log_option_chars_mean",
    "log_option_chars_max",
    "log_option_chars_min",
    "numeric_option_share",
    "option_length_spread",
    "mean_word_length",
    "long_word_share",
    "capitalised_word_share",
    "question_marks",
    "two_statements",
    "two_scenarios",
    "roman_numeral_items",
    "negation",
    "which_of_the_following",
    "reading_passage",
    "compute_request",
    "percent",
    "money",
    "stem_sentences",
    "log_step_words",
    "log_fractions",
    "log_percents",
    "log_distinct_units",
    "log_sentences",
    "log_distinct_numbers",
    "log_largest_number",
    "non_integer_share",
    "distinct_word_share",
    "log_very_long_words",
)
FEATURE_NAMES: Final = _SHAPE_FEATURES + tuple(f"type_{label}" for label in QUERY_TYPES)


def prompt_features(prompt: str, query_type: str | None = None) -> npt.NDArray[np.float64]:
    """The feature vector of one prompt, in `FEATURE_NAMES` order."""
    text = prompt[:20000]
    low = text.lower()
    first_option = _FIRST_OPTION.search(text)
    options = [m.group(2) for m in _OPTION.finditer(text)] if first_option else []
    stem = text[: first_option.start()] if first_option else text
    words = _WORD.findall(text)
    numbers = _NUMBER.findall(text)
    values = []
    for number in numbers:
        try:
            values.append(abs(float(number.replace(",", "").split("/")[0])))
        except ValueError:
            continue
    option_lengths = [len(o) for o in options] or [0]
    word_lengths = [len(w) for w in words] or [0]
    mean_option = sum(option_lengths) / len(option_lengths)
    shape = (
        math.log1p(len(text)),
        math.log1p(len(stem)),
        math.log1p(len(words)),
        math.log1p(text.count("\n") + 1),
        math.log1p(len(numbers)),
        math.log1p(len(_NUMBER.findall(stem))),
        sum(c.isdigit() for c in text) / max(1, len(text)),
        math.log1p(len(_MATH_SYMBOL.findall(text))),
        float(bool(options)),
        math.log1p(mean_option),
        math.log1p(max(option_lengths)),
        math.log1p(min(option_lengths)),
        sum(1 for o in options if _NUMBER.search(o)) / max(1, len(options)),
        float(np.std(option_lengths)) / (1 + mean_option),
        sum(word_lengths) / len(word_lengths),
        sum(1 for n in word_lengths if n >= 9) / len(word_lengths),
        sum(1 for w in words if w[0].isupper()) / max(1, len(words)),
        float(text.count("?")),
        float("statement 1" in low),
        float("scenario 1" in low),
        float(bool(_ROMAN_ITEMS.search(text))),
        float(bool(_NEGATION.search(text))),
        float("which of the following" in low),
        float("the following information" in low),
        float(bool(_COMPUTE.search(low))),
        float(bool(_PERCENT.search(low))),
        float(bool(_MONEY.search(text))),
        float(len(_SENTENCE_END.findall(stem))),
        math.log1p(len(_STEP_WORD.findall(text))),
        math.log1p(len(_FRACTION.findall(text))),
        math.log1p(len(_PERCENT.findall(text))),
        math.log1p(len({u.lower() for u in _UNIT.findall(text)})),
        math.log1p(len(_SENTENCE_END.findall(text))),
        math.log1p(len(set(numbers))),
        math.log1p(min(max(values, default=0.0), 1e12)),
        sum(1 for v in values if v != int(v)) / len(values) if values else 0.0,
        len({w.lower() for w in words}) / max(1, len(words)),
        math.log1p(sum(1 for n in word_lengths if n >= 12)),
    )
    label = query_type if query_type is not None else classify(prompt)
    kinds = tuple(float(label == kind) for kind in QUERY_TYPES)
    return np.array(shape + kinds, dtype=np.float64)
