"""Complete sentences out of a stream of chunks, so output checks run per sentence.

A streamed answer arrives in pieces that cut words and sentences anywhere. Checking each piece
would miss a phone number split in two; checking the whole answer would mean holding it back.
`SentenceSplitter` sits between: it keeps the unfinished tail and hands out each sentence once
its end is certain — a terminator followed by whitespace and then the start of the next
sentence, or a line break. "3.5", "e.g. this" and "example.com" are not ends. A sentence
longer than `max_chars` is cut at its last space so nothing is buffered without bound.
"""

from __future__ import annotations

import re

__all__ = ["SentenceSplitter", "split_sentences"]

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


class SentenceSplitter:
    """Feed chunks, get back the sentences they completed; `flush` returns the rest."""

    def __init__(self, *, max_chars: int = 1000) -> None:
        self._buffer = ""
        self._max_chars = max_chars
        # Where to resume scanning: everything before it has no boundary.
        self._scanned = 0

    @property
    def pending(self) -> str:
        """Text received but not yet handed out."""
        return self._buffer

    def feed(self, chunk: str) -> list[str]:
        """Add a chunk; return the sentences (with their trailing whitespace) now complete."""
        self._buffer += chunk
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

    def flush(self) -> str:
        """The unfinished tail, at the end of the stream."""
        rest, self._buffer, self._scanned = self._buffer, "", 0
        return rest

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


def split_sentences(text: str, *, max_chars: int = 1000) -> list[str]:
    """A whole text as the sentences the streaming splitter would have produced."""
    splitter = SentenceSplitter(max_chars=max_chars)
    sentences = splitter.feed(text)
    rest = splitter.flush()
    if rest:
        sentences.append(rest)
    return sentences
