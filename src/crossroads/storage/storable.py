"""Values every backend stores, and reads back, alike: whatever a request carried.

A log record holds what callers and upstreams sent, so a value may be one no database
column takes as is. Two cases are known, and both are made storable here rather than
refused by the database (which lost the record, or stalled the writer retrying it):

- NUL characters. PostgreSQL's text type cannot hold U+0000, and its `json` type takes
  `\\u0000` but then refuses every operator on that value. NUL becomes U+FFFD (the
  replacement character) on both backends, in text columns and in JSON strings and keys,
  and in filter values, so a filter finds what was stored.
- JSON nested too deeply to be encoded, or encoded but not shown again: the API answers
  with orjson, which stops at 254 levels, and a stored value sits up to four levels down in
  an answer. A value nested more than `MAX_STORED_DEPTH` levels is stored as a short note
  saying why (`{"not_stored": "..."}`), and a value read back that could not be shown (an
  older row, one written by another tool) is shown as such a note instead of failing the
  whole page.
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
    """`value` with every NUL replaced by U+FFFD."""
    return value.replace(_NUL, _REPLACEMENT) if _NUL in value else value


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {
            storable_text(k) if isinstance(k, str) else k: _without_nul(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


def _encode(value: Any) -> bytes:
    """JSON for `value`, or TypeError/ValueError when it cannot be, or nests too deeply."""
    try:
        # Padded, orjson's own depth limit is exactly MAX_STORED_DEPTH for `value`.
        return orjson.dumps([[[[value]]]], option=orjson.OPT_NON_STR_KEYS)[_PAD:-_PAD]
    except TypeError:
        pass
    # What orjson refuses besides depth (an integer beyond 64 bits): the standard library,
    # checked for depth first (it would recurse until RecursionError) and strict about
    # NaN, which is not JSON.
    if isinstance(value, dict | list) and exceeds_depth(value, MAX_STORED_DEPTH):
        raise ValueError(f"nested more than {MAX_STORED_DEPTH} levels deep")
    return json.dumps(value, allow_nan=False).encode()


def storable_json(value: Any) -> tuple[str | None, str | None]:
    """`value` as JSON text any backend stores, and why it had to be replaced, if it was.

    Never raises: a value that cannot be stored becomes a `not_stored` note.
    """
    if value is None:
        return None, None
    try:
        # The common case, inlined: it runs for every JSON column of every record.
        text = orjson.dumps([[[[value]]]], option=orjson.OPT_NON_STR_KEYS)[_PAD:-_PAD]
    except TypeError:
        text = _ESCAPED_NUL  # anything else takes the long way below
    if _ESCAPED_NUL not in text:
        return text.decode(), None
    try:
        text = _encode(value)
        if _ESCAPED_NUL in text:
            text = _encode(_without_nul(value))
    except (TypeError, ValueError, RecursionError) as error:
        reason = str(error) or type(error).__name__
        if isinstance(error, TypeError) and "Recursion limit" in reason:
            reason = f"nested more than {MAX_STORED_DEPTH} levels deep"
        return orjson.dumps(not_stored(reason)).decode(), reason
    return text.decode(), None


def readable_json(text: str | bytes | None) -> Any:
    """A stored JSON value decoded; a note in place of one that cannot be read or shown."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)  # NaN and other non-standard JSON the stdlib wrote
        except (ValueError, RecursionError):
            return not_stored("the stored value is not JSON that can be read back")
    if (
        isinstance(value, dict | list)
        and len(text) > 2 * MAX_STORED_DEPTH  # each level takes two characters at least
        and exceeds_depth(value, MAX_STORED_DEPTH)
    ):
        return not_stored(f"the stored value nests more than {MAX_STORED_DEPTH} levels deep")
    return value
