"""A mock OpenAI chat-completions upstream that is much faster than any gateway under test.

The gateway benchmark divides each gateway's cost by what the upstream costs, so the upstream
must cost next to nothing. This is a raw asyncio protocol on uvloop with canned bytes: it
parses just enough HTTP/1.1 (request line, `Content-Length`, keep-alive) to answer
`POST /v1/chat/completions` and `GET /v1/models`, and never decodes the JSON body. A body
containing `"stream": true` gets an SSE stream of 20 content chunks, spaced `--chunk-gap-ms`
apart so a client can tell whether a proxy forwards chunks as they arrive or buffers them,
then a usage chunk and `data: [DONE]`. Every other chat request gets one fixed completion
with usage, so gateways can price it.

    python benchmarks/gateway/mock_upstream.py --port 9001 --chunk-gap-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import cast

import uvloop

__all__ = ["CHUNKS", "MockUpstream", "serve"]

CHUNKS = 20
_STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
_CREATED = int(time.time())


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


_COMPLETION = _response(
    b"200 OK",
    b"application/json",
    json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": _CREATED,
            "model": "mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "The mock answers at once."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
        },
        separators=(",", ":"),
    ).encode(),
)
_MODELS = _response(
    b"200 OK",
    b"application/json",
    b'{"object":"list","data":[{"id":"mock","object":"model","owned_by":"mock"}]}',
)
_NOT_FOUND = _response(b"404 Not Found", b"application/json", b'{"error":"not found"}')
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _sse(payload: dict[str, object] | str) -> bytes:
    """One SSE event framed as one HTTP chunk, so each event leaves in its own write."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    event = f"data: {data}\n\n".encode()
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def _delta(index: int) -> dict[str, object]:
    delta: dict[str, str] = {"content": f"w{index} "}
    if index == 0:
        delta["role"] = "assistant"
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": "mock",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


_STREAM_CHUNKS = [_sse(_delta(i)) for i in range(CHUNKS)]
_STREAM_TAIL = (
    _sse(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": "mock",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 32},
        }
    )
    + _sse("[DONE]")
    + b"0\r\n\r\n"
)


class MockUpstream(asyncio.Protocol):
    """One keep-alive connection: buffer bytes, answer each complete request in order."""

    def __init__(self, chunk_gap: float) -> None:
        self.chunk_gap = chunk_gap
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # A stream in flight owns the connection; the next request waits for it to end.
        while self.streaming is None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            length = 0
            marker = head.lower().find(b"\r\ncontent-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker + 2)
                length = int(head[marker + 17 : line_end if line_end > 0 else None])
            body_end = head_end + 4 + length
            if len(self.buffer) < body_end:
                return
            body = self.buffer[head_end + 4 : body_end]
            self.buffer = self.buffer[body_end:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if head.startswith(b"POST /v1/chat/completions"):
            if _STREAM_FLAG.search(body):
                self.streaming = asyncio.ensure_future(self._stream())
            else:
                self.transport.write(_COMPLETION)
        elif head.startswith(b"GET /v1/models"):
            self.transport.write(_MODELS)
        else:
            self.transport.write(_NOT_FOUND)

    async def _stream(self) -> None:
        assert self.transport is not None
        self.transport.write(_STREAM_HEAD + _STREAM_CHUNKS[0])
        for chunk in _STREAM_CHUNKS[1:]:
            await asyncio.sleep(self.chunk_gap)
            self.transport.write(chunk)
        await asyncio.sleep(self.chunk_gap)
        self.transport.write(_STREAM_TAIL)
        self.streaming = None
        if self.buffer:
            self.data_received(b"")


async def serve(host: str, port: int, chunk_gap: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: MockUpstream(chunk_gap), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--chunk-gap-ms", type=float, default=5.0, help="spacing of SSE chunks")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunk_gap_ms / 1000))


if __name__ == "__main__":
    main()
