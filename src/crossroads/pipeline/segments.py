"""Cutting streamed text into the pieces a stream check looks at.

A check that runs per sentence must not wait for the whole answer (the point of streaming)
nor look at fragments that cut a name or a number in two. `Sentences` keeps the unfinished
tail and releases each sentence once its end is certain — a terminator followed by white
space and then the start of the next sentence, or a line break. "3.5", "e.g. this", "Dr. Smith"
and "example.com" are not ends. A piece with no sentence end longer than `_LONGEST` is cut
at its last space anyway: a check must not be starved by an answer without punctuation
(code, a table, a list of numbers), nor the caller wait. `Whole` holds everything until the
stream ends (policy `hold`).
"""

from __future__ import annotations

import re

__all__ = ["Sentences", "Whole"]

_LONGEST = 1000

# Lower-cased words that end in a period without ending a sentence.
_ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "etc",
        "vs",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "no",
        "fig",
        "approx",
        "inc",
        "ltd",
        "co",
        "cf",
        "al",
    }
)
_TERMINATORS = ".!?…。！？"
_CLOSERS = "\"')]}”’»*_`"
_WORD_BEFORE = re.compile(r"([\w.]+)$")


def _is_abbreviation(text: str, dot_index: int) -> bool:
    match = _WORD_BEFORE.search(text, 0, dot_index)
    if match is None:
        return False
    word = match.group(1).lower().rstrip(".")
    # Single letters ("J. Smith", "U.S.") and known abbreviations.
    if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return True
    return "." in word and len(word) <= 5 and word.replace(".", "").isalpha()


class Sentences:
    """Releases whole sentences (with their trailing white space) as text arrives."""

    __slots__ = ("_buffer", "_max_chars", "_scanned")

    def __init__(self, *, max_chars: int = _LONGEST) -> None:
        self._buffer = ""
        self._max_chars = max_chars
        # Where to resume scanning: everything before it has no boundary.
        self._scanned = 0

    @property
    def pending(self) -> str:
        """Text received but not yet handed out."""
        return self._buffer

    def push(self, text: str) -> list[str]:
        """Add text; return the sentences (with their trailing white space) now complete."""
        self._buffer += text
        sentences: list[str] = []
        while True:
            end = self._next_boundary()
            if end is None:
                break
            sentences.append(self._buffer[:end])
            self._buffer = self._buffer[end:]
            self._scanned = 0
        # A chunk may bring several limits' worth of text with no sentence end in it.
        while len(self._buffer) > self._max_chars:
            cut = self._buffer.rfind(" ", 0, self._max_chars)
            cut = cut + 1 if cut > 0 else self._max_chars
            sentences.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
            self._scanned = 0
        return sentences

    def flush(self) -> list[str]:
        """The unfinished tail, at the end of the stream."""
        rest, self._buffer, self._scanned = self._buffer, "", 0
        return [rest] if rest else []

    def _next_boundary(self) -> int | None:
        text = self._buffer
        i = self._scanned
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == "\n":
                j = i + 1
                while j < n and text[j] in " \t\r\n":
                    j += 1
                if j == n:
                    # Hold trailing line breaks until the next text shows where they end.
                    self._scanned = i
                    return None
                return j
            if ch in _TERMINATORS:
                j = i + 1
                while j < n and (text[j] in _TERMINATORS or text[j] in _CLOSERS):
                    j += 1
                if j >= n:
                    self._scanned = i
                    return None
                if not text[j].isspace():
                    i = j
                    continue
                k = j
                while k < n and text[k] in " \t":
                    k += 1
                if k >= n:
                    self._scanned = i
                    return None
                if text[k] == "\n":
                    i = k
                    continue
                if ch == "." and _is_abbreviation(text, i):
                    i = k
                    continue
                return k
            i += 1
        self._scanned = n
        return None


class Whole:
    """Holds everything until the stream ends."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    def push(self, text: str) -> list[str]:
        self._parts.append(text)
        return []

    def flush(self) -> list[str]:
        whole, self._parts = "".join(self._parts), []
        return [whole] if whole else []
