"""A small HTTP forward proxy on 127.0.0.1, for tests of upstream calls made through one.

It does what a corporate proxy does for the gateway: `CONNECT host:port` opens a tunnel
(counted in `tunnels`) and relays bytes both ways without reading them, so TLS runs end to
end; a request in absolute form (`POST http://host:port/path`) is forwarded to that host in
origin form without the proxy's own `Proxy-Authorization` (counted in `forwarded`). A client
connection is kept alive: every request on it is read by its framing (`Content-Length` or
chunked), forwarded, and its answer relayed as it arrives (an SSE stream chunk by chunk),
each to the host its own URL names, over one kept-alive connection per upstream. With
`credentials` set it answers 407 to a request without that `Proxy-Authorization`. Every
request head it read is kept in `heads`, and `connections` counts client connections. It
only ever connects to loopback addresses, so a test cannot send traffic anywhere else
through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from urllib.parse import urlsplit

__all__ = ["FakeProxy"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class FakeProxy:
    """`async with FakeProxy() as proxy:` serves on `proxy.url` until the block ends."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.tunnels = 0
        self.forwarded = 0
        self.connections = 0
        self.refused = 0
        self.heads: list[bytes] = []
        self._credentials = credentials
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._port is not None, "the proxy has not started"
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one_client(reader, writer)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstreams: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed its kept-alive connection
                self.heads.append(head)
                method, target, version, headers = _parse_head(head)
                if not self._authorized(headers.get("proxy-authorization")):
                    self.refused += 1
                    await _skip_body(reader, headers)
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                    )
                    await writer.drain()
                    continue
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    await self._tunnel(reader, writer, host.strip("[]"), port)
                    return
                if not await self._forward(
                    reader, writer, upstreams, head, method, target, version, headers
                ):
                    return
        finally:
            for _, up_writer in upstreams.values():
                up_writer.close()

    async def _tunnel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: str
    ) -> None:
        if host not in _LOOPBACK or not port.isdigit():
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        self.tunnels += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstreams: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]],
        head: bytes,
        method: str,
        target: str,
        version: str,
        headers: dict[str, str],
    ) -> bool:
        """Forward one absolute-form request and relay its answer; False ends the connection."""
        parts = urlsplit(target)
        host, port = parts.hostname or "", parts.port or 80
        if host not in _LOOPBACK:
            await _skip_body(reader, headers)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return True
        upstream = upstreams.get((host, port))
        if upstream is None or upstream[1].is_closing():
            try:
                upstream = await asyncio.open_connection(host, port)
            except OSError:
                await _skip_body(reader, headers)
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return True
            upstreams[(host, port)] = upstream
        up_reader, up_writer = upstream
        self.forwarded += 1
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = head.decode("latin-1").split("\r\n")
        kept = [f"{method} {origin} {version}"] + [
            line for line in lines[1:] if not line.lower().startswith("proxy-authorization:")
        ]
        up_writer.write("\r\n".join(kept).encode("latin-1"))
        await _relay_body(reader, up_writer, headers)
        try:
            answer_head = await up_reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the upstream closed without answering: so does the proxy
        writer.write(answer_head)
        _, _, _, answer_headers = _parse_head(answer_head)
        delimited = await _relay_body(up_reader, writer, answer_headers, response=True)
        if not delimited:  # a body ended by closing: the connection ends with it
            return False
        closing = "close" in (
            headers.get("connection", "").lower() + answer_headers.get("connection", "").lower()
        )
        return not closing

    def _authorized(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        user, password = self._credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return header == f"Basic {expected}"


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """The first line's three parts (method, target, version; or version, status, reason)
    and the lower-cased headers of a message head."""
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    first += [""] * (3 - len(first))
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    return first[0], first[1], first[2], headers


async def _relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: dict[str, str],
    *,
    response: bool = False,
) -> bool:
    """Copy one message body as it arrives; False when it was delimited by the connection's
    end (a response with neither a length nor chunks)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    writer.write(trailer)
                writer.write(b"\r\n")
                await writer.drain()
                return True
            writer.write(await reader.readexactly(size + 2))
            await writer.drain()
    if "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            writer.write(data)
            remaining -= len(data)
            await writer.drain()
        return True
    if not response:
        return True  # a request without a body
    await _pipe(reader, writer)
    return False


async def _skip_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Read past a request body the proxy will not forward."""
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reader's end, then pass the end on."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
