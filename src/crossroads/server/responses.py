"""Response types: orjson-encoded JSON, server-sent events and the error envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from crossroads.protocol.errors import GatewayError
from crossroads.server.hangup import ClientLeft, HangUp

__all__ = ["EventStreamResponse", "JSONResponse", "error_response"]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.envelope(), status_code=error.status, headers=error.headers)


class EventStreamResponse(Response):
    """An SSE body sent chunk by chunk as the iterator yields, stopped when the client leaves.

    Starlette's StreamingResponse notices a hang-up with an anyio task group per stream;
    here `HangUp`'s one watcher task cancels the sending instead, which closes the iterator
    (and with it the upstream call) the same way. A stream whose client left ends quietly:
    the iterator's own clean-up records what happened.
    """

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self.chunks = chunks
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with HangUp(receive):
                start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                await send(start)
                async for chunk in self.chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except ClientLeft:
            pass
        finally:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
