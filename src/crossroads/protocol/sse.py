"""Server-sent events as OpenAI frames them: `data: <json>` and a final `data: [DONE]`."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["SSE_DONE", "sse"]

SSE_DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    """One event carrying `payload` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"
