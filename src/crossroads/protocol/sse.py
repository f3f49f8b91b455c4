"""Server-sent events as OpenAI frames them: `data: <json>` and a final `data: [DONE]`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

__all__ = ["SSE_DONE", "Primed", "primed", "sse"]

SSE_DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    """One event carrying `payload` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Primed:
    """An event stream whose generator has already run to its first event.

    An async generator closed before it starts never runs its `finally`, so the clean-up
    that records the request and releases its limits would be skipped if the client left
    before the response began. Priming starts it; this object hands out the first event,
    then the rest, and closing it closes the generator.
    """

    __slots__ = ("_first", "_rest")

    def __init__(self, first: bytes | None, rest: AsyncGenerator[bytes, None]) -> None:
        self._first = first
        self._rest = rest

    def __aiter__(self) -> Primed:
        return self

    async def __anext__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        return await self._rest.__anext__()

    async def aclose(self) -> None:
        await self._rest.aclose()


async def primed(events: AsyncGenerator[bytes, None]) -> Primed:
    """`events`, started (see `Primed`)."""
    return Primed(await anext(events, None), events)
