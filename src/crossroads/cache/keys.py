"""What makes two requests "the same": the exact key, the semantic context, the veto.

The exact key hashes the request body with everything that does not change the answer
left out (`stream`, `user`, `metadata`, the gateway's own fields…) and message text
whitespace-normalised; model, sampling parameters, tools and formats all stay in. The
semantic context is the same hash without the last user message: two requests may share
an answer only when everything but that question is identical. The question is then
compared by embedding, and `veto` refuses a pair whose names or numbers differ — so "What
is the population of Paris?" never answers "What is the population of Lyon?", however
similar their vectors.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

import orjson

__all__ = ["exact_key", "last_question", "normalise_question", "salient_terms", "veto"]

# Fields that change how an answer is delivered or recorded, not what it says.
_IGNORED = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "session_id",
        "extra",
        "debug",
        "cache",
        "openai_api_key",
        "guardrails",
        "models",
        "provider",
        "route",
        "routing",
        "max_cost",
        "willingness_to_pay",
    }
)
_SPACE = re.compile(r"\s+")


def _squeeze(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _normal_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _squeeze(content)}
    return message


def _digest(value: Any) -> str:
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _kept(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _IGNORED}


def exact_key(body: dict[str, Any]) -> str:
    kept = _kept(body)
    kept["messages"] = [_normal_message(m) for m in body.get("messages") or ()]
    return _digest(kept)


def last_question(body: dict[str, Any]) -> tuple[str, str] | None:
    """(semantic context hash, the last message's text) when the last message is a user's
    plain text; None otherwise (no semantic lookup)."""
    messages = body.get("messages") or ()
    if not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "user" or not isinstance(last.get("content"), str):
        return None
    kept = _kept(body)
    kept["messages"] = [_normal_message(m) for m in messages[:-1]]
    return _digest(kept), _squeeze(last["content"])


def normalise_question(text: str) -> str:
    """What is embedded: case-folded, accents and punctuation kept apart from words."""
    return unicodedata.normalize("NFKC", text).casefold()


# Capitalised words that are grammar, not names: sentence openers and pronouns.
_COMMON = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "give",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "list",
        "me",
        "my",
        "name",
        "of",
        "on",
        "or",
        "please",
        "show",
        "tell",
        "that",
        "the",
        "their",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "explain",
        "describe",
        "compare",
    )
)
_WORD = re.compile(r"[^\W_][\w'’.-]*", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")


def _content_words(text: str) -> dict[str, bool]:
    """Casefolded content words → whether the word is salient where it stands: a number, a
    capitalised word inside a sentence (a name), or any word of a text written without
    capitals (where names cannot be told apart). A capitalised sentence opener is not
    salient: it is capitalised because it opens the sentence."""
    cased = any(c.isupper() for c in text)
    out: dict[str, bool] = {}
    for match in _WORD.finditer(text):
        raw = match.group(0).rstrip(".-'’")
        word = raw.casefold().removesuffix("'s").removesuffix("’s")
        word = word[:-3] + "ize" if word.endswith("ise") and len(word) > 5 else word
        if not word or word in _COMMON:
            continue
        opener = not text[: match.start()].strip() or bool(
            _SENTENCE_END.search(text[: match.start()])
        )
        if any(c.isdigit() for c in word) or not cased:
            salient = True
        else:
            salient = any(c.isupper() for c in raw) and (
                not opener or any(c.isupper() for c in raw[1:])
            )
        out[word] = out.get(word, False) or salient
    return out


def salient_terms(text: str) -> frozenset[str]:
    """The words of `text` that a paraphrase must keep: numbers and names."""
    return frozenset(word for word, salient in _content_words(text).items() if salient)


def veto(asked: str, stored: str) -> bool:
    """True when the two questions must not share an answer: a word that one has and the
    other lacks is a name or a number (or any word, in a text without capitals)."""
    a, b = _content_words(asked), _content_words(stored)
    return any(salient for word, salient in a.items() if word not in b) or any(
        salient for word, salient in b.items() if word not in a
    )
