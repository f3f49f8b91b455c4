"""Decoding a request body: JSON, and no deeper than any real request needs.

Every endpoint that takes a JSON body decodes it here. Nesting is capped at parse time
because deep documents break far from where they arrive: recursive validators and encoders
(pydantic, orjson's encoder at 255 levels, SQL JSON columns) raise `RecursionError` or
refuse the value long after the request was admitted, counted against limits, or stored.
A cap of 64 levels leaves room for any real body — a JSON schema in `response_format`
nested 30 objects deep still fits — and refuses the rest with a 400 that says why.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.protocol.errors import bad_request

__all__ = ["MAX_JSON_DEPTH", "decode_json_body", "exceeds_depth"]

MAX_JSON_DEPTH = 64


def exceeds_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` (a dict or list) nests more than `limit` levels deep; measured level
    by level, so a document of any depth is measured without recursion."""
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1
    return False


def decode_json_body(raw: bytes, *, empty: Any = ...) -> Any:
    """The decoded body, or a 400 for bytes that are not JSON or nest too deeply.

    `empty`, when given, is returned for a body of only whitespace.
    """
    if empty is not ... and not raw.strip():
        return empty
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in exc.msg or "recursion" in exc.msg:
            raise _too_deep() from None
        raise bad_request(
            f"The request body is not valid JSON ({exc.msg} at position {exc.pos}).",
            code="invalid_json",
        ) from None
    if isinstance(body, dict | list) and exceeds_depth(body):
        raise _too_deep()
    return body


def _too_deep() -> Exception:
    return bad_request(
        f"The request body nests objects or arrays more than {MAX_JSON_DEPTH} levels deep; "
        "flatten it.",
        code="json_too_deep",
    )
