"""Reading the pipeline's chat-completions event stream, and writing named SSE events.

The gateway's stream is a byte iterator of `data: <json>` frames (protocol/sse.py). An
inbound API that translates it needs the decoded chunks back, and writes its own frames,
which Anthropic's and the Responses API's SDKs expect with an `event:` line naming each.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import orjson

__all__ = ["EventTranslator", "chat_chunks", "named_event", "translated_events"]


async def chat_chunks(frames: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Each JSON payload of the chat stream `frames`, in order, until `[DONE]`.

    Frames are split on the blank line that ends an SSE event, so a frame cut across two
    reads, or two in one read, decode the same. After `[DONE]` the stream is still read to
    its end: the pipeline records a stream as complete only once it has run out, and one
    closed at `[DONE]` would be logged as a client that left."""
    pending = b""
    done = False
    async for part in frames:
        if done:
            continue
        pending += part
        while (end := pending.find(b"\n\n")) >= 0:
            frame, pending = pending[:end], pending[end + 2 :]
            for line in frame.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                payload = orjson.loads(data)
                if isinstance(payload, dict):
                    yield payload
            if done:
                break


def named_event(name: str, payload: dict[str, Any]) -> bytes:
    """One SSE event with its `event:` line, as Anthropic and the Responses API send them."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class EventTranslator(Protocol):
    """One inbound API's view of a chat stream: its opening events, the events for each
    chat chunk, and its closing events."""

    def start(self) -> list[bytes]: ...

    def feed(self, chunk: dict[str, Any]) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


async def translated_events(
    frames: AsyncIterator[bytes], stream: EventTranslator
) -> AsyncGenerator[bytes, None]:
    """The chat stream `frames` in another API's events, one write per upstream chunk.

    After a chunk that carries an error (its events say so) the rest is read to the end,
    where the pipeline records the failure, and the closing events are not sent."""
    try:  # from the first yield on: closing this closes `frames`, which records the call
        yield b"".join(stream.start())
        failed = False
        async for chunk in chat_chunks(frames):
            if failed:
                continue
            if events := stream.feed(chunk):
                yield b"".join(events)
            failed = chunk.get("error") is not None
        if not failed:
            yield b"".join(stream.finish())
    finally:
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:
            await aclose()
