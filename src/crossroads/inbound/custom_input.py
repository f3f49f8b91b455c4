"""A custom tool call's input text, decoded while its JSON arguments stream.

Upstream, a custom tool call is a function call whose arguments are `{"input": "<text>"}`
(inbound/custom_tools.py), and they stream as fragments of that JSON. `InputDecoder` gives
the text of the `input` string as far as it can be decoded so far, so a Responses client
sees `custom_tool_call_input.delta` events as the model writes, not all at the end.

It decodes only what is certain: the string's characters up to the last complete escape.
Arguments that do not begin with the `input` key (a model that answered the text bare, or
put another key first) are not decoded live; the whole input then comes when the call
ends, from the same rule as a non-streamed answer (`call_input`).
"""

from __future__ import annotations

import re

import orjson

__all__ = ["InputDecoder"]

_OPENING = re.compile(r'\s*\{\s*"input"\s*:\s*"')
# How much leading text may arrive before the opening is known not to be there.
_OPENING_WITHIN = 64


class InputDecoder:
    def __init__(self) -> None:
        self._head: str | None = ""  # the arguments before the string opened; None after
        self._pending = ""  # the string's characters not yet decoded (an escape's start)
        self._live = True
        self._ended = False
        self._given: list[str] = []  # the input text given so far, in pieces

    @property
    def text(self) -> str:
        """The input text given so far."""
        return "".join(self._given)

    def feed(self, fragment: str) -> str:
        """The input text that `fragment` of the arguments completes ("" if none)."""
        if not self._live or self._ended:
            return ""
        if self._head is not None:
            self._head += fragment
            match = _OPENING.match(self._head)
            if match is None:
                if len(self._head) > _OPENING_WITHIN or not _could_open(self._head):
                    self._live = False
                return ""
            self._pending, self._head = self._head[match.end() :], None
        else:
            self._pending += fragment
        end, self._ended = _safe_end(self._pending, 0)
        if end == 0:
            return ""
        try:
            new = orjson.loads(f'"{self._pending[:end]}"')
        except orjson.JSONDecodeError:  # a lone surrogate escape, or a raw control char
            self._live = False
            return ""
        self._pending = self._pending[end:]
        self._given.append(str(new))
        return str(new)


def _could_open(raw: str) -> bool:
    """Whether `raw` may still grow into the opening `{"input": "`."""
    compact = re.sub(r"\s+", "", raw)
    target = '{"input":"'
    return target.startswith(compact) or compact.startswith(target)


def _safe_end(raw: str, i: int) -> tuple[int, bool]:
    """How far from `i` the string's characters can be decoded (up to the last complete
    escape), and whether its closing quote was reached."""
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == '"':
            return i, True
        if c != "\\":
            i += 1
            continue
        if i + 1 >= n:
            return i, False
        if raw[i + 1] != "u":
            i += 2
            continue
        if i + 6 > n:
            return i, False
        code = int(raw[i + 2 : i + 6], 16) if _hex(raw[i + 2 : i + 6]) else -1
        if 0xD800 <= code < 0xDC00:  # a high surrogate: decoded with the low one after it
            if i + 12 > n:
                return i, False
            i += 12
        else:
            i += 6
    return i, False


def _hex(digits: str) -> bool:
    return len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits)
