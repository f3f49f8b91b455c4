"""Turns pydantic's validation errors into one OpenAI-style 400 a caller can act on.

OpenAI reports one problem at a time with `param` set to the offending field; we do the
same, naming the field by its path in the body (`messages[2].content`) and saying what was
expected. pydantic's locations include the names of union members it tried (`str`,
`list[...]`, a discriminator tag); those are dropped by walking the location alongside the
body itself, so only real keys and indexes remain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from crossroads.protocol.errors import GatewayError, bad_request

__all__ = ["body_path", "validate_body", "validation_error"]

Model = TypeVar("Model", bound=BaseModel)

_BACKTICKED = re.compile(r"`([a-z_]+)`")


def body_path(loc: Sequence[int | str], body: Any) -> str:
    """The location as a path through `body`, skipping parts that are not in it."""
    out = ""
    node = body
    for position, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            out += f"[{part}]"
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict):
            if part in node:
                out += f".{part}" if out else part
                node = node[part]
            elif position == len(loc) - 1:
                # A missing required field: name it, it is what the caller must add.
                out += f".{part}" if out else part
                node = None
        # anything else is a union member's name, not part of the body
    return out


def _describe(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid":
        expected = (error.get("ctx") or {}).get("expected_tags", "")
        tag = (error.get("ctx") or {}).get("tag", "")
        return f"{tag!r} is not one of the accepted values ({expected})"
    if kind == "union_tag_not_found":
        field = (error.get("ctx") or {}).get("discriminator", "type").strip("'")
        return f"must be an object with a `{field}` field"
    return message[0].lower() + message[1:] if message else "is invalid"


def validation_error(exc: ValidationError, body: Any) -> GatewayError:
    """One 400 for the most specific problem in the body."""
    described = [(body_path(e["loc"], body), _describe(e)) for e in exc.errors(include_url=False)]
    deepest = max(len(path) for path, _ in described)
    path = next(path for path, _ in described if len(path) == deepest)
    details = list(dict.fromkeys(d for p, d in described if p == path))
    detail = " or ".join(details)
    param: str | None = path or None
    if path and details == ["is required"]:
        message = f"Missing required parameter: '{path}'."
    elif path:
        message = f"Invalid value for '{path}': {detail}."
    else:
        message = f"Invalid request: {detail}."
        named = _BACKTICKED.search(detail)
        param = named.group(1) if named else None
    return GatewayError(400, message.replace("..", "."), param=param, code="invalid_value")


def validate_body(model: type[Model], body: dict[str, Any], noun: str) -> Model:
    """`model` from a decoded JSON object, or the 400 that says what to fix: an unknown
    field is named with the fields `noun` has ("Unrecognized field: 'x'. A key has: …"), every
    unknown field at once,
    anything else as `validation_error` describes it. For the admin and feedback bodies,
    whose models forbid extra fields."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        unknown = [
            body_path(error["loc"], body)
            for error in exc.errors(include_url=False)
            if error["type"] == "extra_forbidden"
        ]
        if unknown:  # every one named, so the caller fixes the body once
            fields = ", ".join(f"'{field}'" for field in unknown)
            known = ", ".join(model.model_fields)
            raise bad_request(
                f"Unrecognized field{'s' if len(unknown) > 1 else ''}: {fields}. "
                f"{noun} has: {known}.",
                param=unknown[0],
                code="unknown_parameter",
            ) from None
        raise validation_error(exc, body) from None
