"""A raw HTTP/1.1 exchange over a loopback socket, for bytes no client library will send.

The fuzzer must put NUL bytes, lone surrogates and non-latin-1 bytes in headers and request
targets, and send bodies that are not what their headers say. Client libraries validate
all of that away before anything leaves the process, so requests are written by hand: one
connection per request (`Connection: close`), the answer read to the end and de-chunked.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import orjson

__all__ = ["Reply", "exchange"]


@dataclass(slots=True)
class Reply:
    """What came back: the status (0 when the connection failed), headers and body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    transport_error: str | None = None

    @property
    def is_event_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    def envelope_problem(self) -> str | None:
        """Why an error answer is not OpenAI's envelope `{"error": {message, type, param,
        code}}` with a non-empty message; None when it is (or the answer is no error)."""
        if self.status < 400:
            return None
        try:
            error = orjson.loads(self.body)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return f"not a JSON error envelope: {self.body[:120]!r}"
        if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
            return f"envelope fields are {sorted(error) if isinstance(error, dict) else error!r}"
        if not isinstance(error["message"], str) or not error["message"]:
            return "the envelope's message is empty"
        return None

    def stream_errors(self) -> list[str]:
        """The `code` of every error event in an event-stream body (a failure after the
        status line was sent, e.g. `internal_error`)."""
        codes: list[str] = []
        if not self.is_event_stream:
            return codes
        for line in self.body.split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                codes.append("malformed_event")
                continue
            error = event.get("error") if isinstance(event, dict) else None
            if isinstance(error, dict):
                codes.append(str(error.get("code")))
        return codes


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return bytes(out)  # cut short: keep what arrived
        size = int(data[position:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        position = end + 2 + size + 2


async def _talk(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    """Write `request` while reading the answer: a server may answer (a 401, a 413) and
    close before it has read a large body, and the answer must not be lost to the reset
    that closing with unread bytes causes."""

    async def write() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(request)
            await writer.drain()

    sending = asyncio.create_task(write())
    received = bytearray()
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionError:
        pass  # keep what arrived before the reset
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    return bytes(received)


async def exchange(
    port: int,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    *,
    limit_s: float = 120.0,
) -> Reply:
    """Send one request to 127.0.0.1:`port` exactly as given and read the whole answer."""
    head = [
        method.encode() + b" " + target + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Connection: close",
    ]
    head += [name + b": " + value for name, value in headers]
    if body is not None:
        head.append(b"Content-Length: " + str(len(body)).encode())
    request = b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                raw = await _talk(reader, writer, request)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        return Reply(0, transport_error=f"{type(exc).__name__}: {exc}")
    if not raw:
        return Reply(0, transport_error="the connection closed without an answer")
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return Reply(0, transport_error=f"no response head in {raw[:80]!r}")
    lines = raw[:head_end].split(b"\r\n")
    try:
        status = int(lines[0].split(b" ")[1])
    except (IndexError, ValueError):
        return Reply(0, transport_error=f"bad status line {lines[0][:80]!r}")
    parsed: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        parsed[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    content = raw[head_end + 4 :]
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        content = _dechunk(content)
    return Reply(status, parsed, content)
