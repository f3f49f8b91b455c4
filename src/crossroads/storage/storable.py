"""Values every backend stores, and reads back, alike: whatever a request carried.

A log record holds what callers and upstreams sent, so a value may be one no database
column takes as is. These are made storable here rather than refused by the database
(which lost the record, or stalled the writer retrying it):

- NUL characters. PostgreSQL's text type cannot hold U+0000, and its `json` type takes
  `\\u0000` but then refuses every operator on that value. NUL becomes U+FFFD (the
  replacement character) on both backends, in text columns and in JSON strings and keys,
  and in filter values, so a filter finds what was stored. So do unpaired surrogates,
  which no UTF-8 text holds.
- JSON nested too deeply to be encoded, or encoded but not shown again: the API answers
  with orjson, which stops at 254 levels, and a stored value sits up to four levels down in
  an answer. A value nested more than `MAX_STORED_DEPTH` levels is stored as a short note
  saying why (`{"not_stored": "..."}`), and a value read back that could not be shown (an
  older row, one written by another tool) is shown as such a note instead of failing the
  whole page. Integers beyond 64 bits, which orjson cannot encode, are stored as floats.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from crossroads.protocol.json_body import exceeds_depth

__all__ = [
    "MAX_STORED_DEPTH",
    "not_stored",
    "readable_json",
    "storable_json",
    "storable_text",
]

# orjson encodes at most 254 levels; an API answer puts a stored value up to 4 levels down
# (`{"data": [{"metadata": value}]}`), and encoding it inside 4 lists checks the bound at
# no cost.
_PAD = 4
MAX_STORED_DEPTH = 254 - _PAD
_NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"
_REPLACEMENT = "\ufffd"


def not_stored(reason: str) -> dict[str, str]:
    """What stands in for a value that could not be stored or shown, and says why."""
    return {"not_stored": reason}


def storable_text(value: str) -> str:
    """`value` with every NUL, and every unpaired surrogate (which no UTF-8 text can hold),
    replaced by U+FFFD."""
    if _NUL in value:
        value = value.replace(_NUL, _REPLACEMENT)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


# Characters of an indexed text column a row keeps: at most 4 bytes each in UTF-8, so 512
# stay under PostgreSQL's B-tree limit of 2,704 bytes per index row (a longer value makes
# the database refuse the whole row), and no real session id, key id or model name is
# longer.
MAX_INDEXED_TEXT = 512


def indexed_text(value: str) -> str:
    """`value` as an indexed text column stores it (and a filter on it must match it):
    storable, and cut to `MAX_INDEXED_TEXT` characters."""
    return storable_text(value)[:MAX_INDEXED_TEXT]


def _plain(value: Any) -> Any:
    """`value` with what orjson or a database refuses replaced: text as `storable_text` does,
    integers beyond 64 bits by floats, keys that are not text by their text. Only for values
    already known to nest at most `MAX_STORED_DEPTH` levels."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value) if abs(value) < 2**1023 else str(value)
    return value


def _padded(value: Any) -> bytes:
    # Inside 4 lists, orjson's own depth limit is exactly MAX_STORED_DEPTH for `value`.
    return orjson.dumps([[[[value]]]], option=orjson.OPT_NON_STR_KEYS)[_PAD:-_PAD]


def _too_deep(value: Any) -> bool:
    return isinstance(value, dict | list) and exceeds_depth(value, MAX_STORED_DEPTH)


def storable_json(value: Any) -> tuple[str | None, str | None]:
    """`value` as JSON text any backend stores and orjson reads and shows back, and why it
    had to be replaced, if it was.

    Never raises: a value that cannot be stored becomes a `not_stored` note.
    """
    if value is None:
        return None, None
    try:
        # The common case, inlined: it runs for every JSON column of every record.
        text = orjson.dumps([[[[value]]]], option=orjson.OPT_NON_STR_KEYS)[_PAD:-_PAD]
    except TypeError:
        text = _ESCAPED_NUL  # anything else takes the long way below
    # A text without a backslash holds no escape: one byte found by memchr, three times
    # faster than looking for the whole escape, which only texts with escapes then need.
    if b"\\" not in text or _ESCAPED_NUL not in text:
        return text.decode(), None
    if _too_deep(value):
        reason = f"nested more than {MAX_STORED_DEPTH} levels deep"
        return orjson.dumps(not_stored(reason)).decode(), reason
    try:
        return _padded(_plain(value)).decode(), None
    except (TypeError, ValueError) as error:  # a type JSON has no form for
        reason = str(error) or type(error).__name__
        return orjson.dumps(not_stored(reason)).decode(), reason


def readable_json(text: str | bytes | None) -> Any:
    """A stored JSON value decoded; a note in place of one that cannot be read or shown."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            # What another writer may have stored: NaN, integers beyond 64 bits, escaped
            # unpaired surrogates; made showable below.
            value = json.loads(text)
        except (ValueError, RecursionError):
            return not_stored("the stored value is not JSON that can be read back")
    else:
        if not isinstance(value, dict | list) or len(text) <= 2 * MAX_STORED_DEPTH:
            return value  # each level takes two characters at least: never too deep
    if _too_deep(value):
        return not_stored(f"the stored value nests more than {MAX_STORED_DEPTH} levels deep")
    return _plain(value)
