"""Hostile JSON values, and an encoder that writes what `json.dumps` will not.

Bodies are built as Python values in which `Raw` stands for JSON text written as is: a
number token such as `1e309` or `NaN`, a document nested 5,000 levels deep, a string with a
lone surrogate escape. `encode` writes the rest like `json.dumps`, escaping non-ASCII or
writing it as UTF-8 (with lone surrogates passed through as invalid UTF-8) at random.
Everything draws from the `random.Random` it is given, so a seed reproduces every byte.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ODD_NUMBERS",
    "Raw",
    "deep",
    "encode",
    "hostile_string",
    "huge_array",
    "huge_string",
    "odd_number",
    "wrong_type",
]


@dataclass(frozen=True, slots=True)
class Raw:
    """JSON text inserted verbatim."""

    text: str


def encode(value: Any, rng: random.Random) -> bytes:
    """`value` as JSON bytes; non-ASCII escaped or raw UTF-8, chosen by `rng`."""
    ascii_only = rng.random() < 0.5
    text = _encode(value, ascii_only)
    return text.encode("utf-8", "surrogatepass")


def _encode(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (
            f"{_string(str(k), ascii_only)}:{_encode(v, ascii_only)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v, ascii_only) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, ascii_only)
    return json.dumps(value)


def _string(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


# Number tokens: valid JSON at the edges of what a double or an int64 holds, and the
# non-standard tokens some encoders write (invalid JSON, which must be a 400 too).
ODD_NUMBERS = (
    "1e308",
    "-1e308",
    "1e309",
    "-1e309",
    "1e-320",
    "-0.0",
    "0e0",
    "1E+2",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" + "0" * 400,
    "0.30000000000000004",
    "1e20",
    "-1",
    "4294967296",
    "2147483648",
    "NaN",
    "Infinity",
    "-Infinity",
    "1.5",
    "0",
)


def odd_number(rng: random.Random) -> Raw:
    return Raw(rng.choice(ODD_NUMBERS))


# Characters that break naive handling: NUL and other controls, a lone surrogate (escaped,
# so the JSON is valid but the string cannot be encoded as UTF-8), right-to-left and
# combining marks, non-latin-1 scripts, emoji, a BOM, noncharacters, line separators.
_HOSTILE = (
    "\x00",
    "\x01\x02\x1b[31m",
    "\r\n",
    "\ud800",
    "\udfff",
    "\u202e",
    "e\u0301\u0301\u0301",
    "中文",
    "Ελληνικά",
    "العربية",
    "日本語テキスト",
    "😀🔥👩‍👩‍👧",
    "\ufeff",
    "\uffff",
    "\u2028\u2029",
    "€",
    "é",
    "\\",
    '"',
    "'; DROP TABLE logs; --",
    "%00",
    "{{7*7}}",
    "${jndi:x}",
    "\x7f",
    "a" * 70,
)


def hostile_string(rng: random.Random, length: int = 3) -> str:
    """A short string of hostile pieces (possibly with ordinary text around them)."""
    pieces = [rng.choice(_HOSTILE) for _ in range(rng.randint(1, length))]
    if rng.random() < 0.3:
        pieces.insert(0, "hello ")
    return "".join(pieces)


def huge_string(rng: random.Random) -> str:
    """100 KB to 2 MB of text, plain or hostile."""
    size = rng.choice((100_000, 500_000, 2_000_000))
    unit = rng.choice(("word ", "中", "😀", "\x00", "é"))
    return unit * (size // len(unit.encode("utf-8")))


# A huge body is meant to cross the gateway's 10 MB limit, not to fill the fuzzer's memory:
# 100,000 copies of an item that another mutation nested 5,000 levels deep would be 3 GB.
HUGE_BODY_BYTES = 24 * 1024 * 1024


def huge_array(rng: random.Random, item: Any = 1) -> list[Any]:
    """1,000 to 100,000 copies of `item`, at most `HUGE_BODY_BYTES` of them once encoded."""
    count = rng.choice((1_000, 10_000, 100_000))
    size = len(_encode(item, ascii_only=True)) + 1
    return [item] * max(1, min(count, HUGE_BODY_BYTES // size))


DEPTHS = (2, 10, 32, 63, 64, 65, 100, 255, 256, 257, 300, 1000, 5000)


def deep(rng: random.Random, leaf: str = '"leaf"') -> Raw:
    """Objects or arrays (or both, alternating) nested to a depth drawn from `DEPTHS`."""
    depth = rng.choice(DEPTHS)
    shape = rng.choice(("object", "array", "mixed"))
    if shape == "object":
        return Raw('{"x":' * depth + leaf + "}" * depth)
    if shape == "array":
        return Raw("[" * depth + leaf + "]" * depth)
    half = depth // 2
    return Raw('{"x":[' * half + leaf + "]}" * half)


def wrong_type(rng: random.Random) -> Any:
    """A value of any JSON type, for a field that expects another."""
    return rng.choice(
        (
            "10",
            "true",
            "yes",
            "",
            True,
            False,
            None,
            0,
            1,
            -1,
            1.5,
            [],
            {},
            [1, "a"],
            {"a": 1},
            [[[]]],
            odd_number(rng),
            hostile_string(rng),
            deep(rng),
        )
    )
