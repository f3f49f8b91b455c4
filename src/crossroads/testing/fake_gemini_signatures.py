"""Gemini 3's thought signatures, as the fake Gemini upstream issues and checks them.

Gemini 3 attaches an opaque `thoughtSignature` to the first `functionCall` part of every
answer that calls functions, and refuses with 400 a request whose current turn (everything
after the last user content that is not only function responses) gives a step's first
function call back without it. A gateway that loses the signature on the OpenAI round trip
works against Gemini 2.5 and fails against Gemini 3, so the fake's `signed` behaviour
enforces the rule. The fake's signature depends on the function's name, so one given back
on the wrong call is refused too; the two values Google documents for history that Gemini
did not produce (`BYPASS_SIGNATURES`) are accepted, as the real API accepts them.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

__all__ = ["BYPASS_SIGNATURES", "signature_error", "thought_signature"]

BYPASS_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)
_DOCS = "https://ai.google.dev/gemini-api/docs/thought-signatures"


def thought_signature(name: str) -> str:
    """The fake's signature for a call of function `name`."""
    return base64.b64encode(hashlib.sha256(b"fake-gemini:" + name.encode()).digest()).decode()


def signature_error(contents: list[dict[str, Any]]) -> str | None:
    """Why Gemini 3 refuses these `contents` for their thought signatures, or None."""
    start = -1
    for i, content in enumerate(contents):
        parts = content.get("parts") or []
        if content.get("role") != "model" and not all(
            "functionCall" in p or "functionResponse" in p for p in parts
        ):
            start = i
    for i in range(start + 1, len(contents)):
        parts = contents[i].get("parts") or []
        calls = [(j, p) for j, p in enumerate(parts) if "functionCall" in p]
        if contents[i].get("role") != "model" or not calls:
            continue
        j, first = calls[0]
        name = (first["functionCall"] or {}).get("name") or ""
        signature = first.get("thoughtSignature")
        if signature is None:
            return (
                "Function call is missing a thought_signature in functionCall parts. This is "
                "required for tools to work correctly, and missing thought_signature may lead to "
                f"degraded model performance. Additional data, function call `default_api:{name}` "
                f", position {j + 1}. Please refer to {_DOCS} for more details."
            )
        if signature not in BYPASS_SIGNATURES and signature != thought_signature(name):
            return f"Thought signature is not valid (contents[{i}].parts[{j}])."
    return None
