"""Cutting streamed text into the pieces a stream check looks at.

A check that runs per sentence must not wait for the whole answer (the point of streaming)
nor look at fragments that cut a name or a number in two. `Sentences` releases text at
sentence ends — `.`, `!`, `?` or `…` followed by white space, or a line break — and holds the
rest; `Whole` holds everything until the stream ends (policy `hold`).
"""

from __future__ import annotations

import re

__all__ = ["Sentences", "Whole"]

# A sentence ends after terminal punctuation (closing quotes/brackets allowed) and the white
# space that follows it, or after a line break. Decimal points ("3.5") and abbreviations
# followed by no space are not ends, because the space is required.
_END = re.compile(r"""[.!?…]+["')\]]*\s+|\n+""")

# A piece with no sentence end this long is released anyway: a check must not be starved
# by an answer without punctuation (code, a table, a list of numbers), nor the caller wait.
_LONGEST = 1000


class Sentences:
    """Releases whole sentences (with their trailing white space) as text arrives."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def push(self, text: str) -> list[str]:
        held = self._held + text
        pieces: list[str] = []
        start = 0
        for match in _END.finditer(held):
            if match.end() == len(held) and not match.group().endswith("\n"):
                # White space at the very end may be followed by more of it: wait.
                break
            pieces.append(held[start : match.end()])
            start = match.end()
        rest = held[start:]
        while len(rest) > _LONGEST:
            pieces.append(rest[:_LONGEST])
            rest = rest[_LONGEST:]
        self._held = rest
        return pieces

    def flush(self) -> list[str]:
        held, self._held = self._held, ""
        return [held] if held else []


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
