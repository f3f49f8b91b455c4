"""A small HTTP forward proxy on 127.0.0.1, for tests of upstream calls made through one.

It does what a corporate proxy does for the gateway: `CONNECT host:port` opens a tunnel
(counted in `tunnels`) and relays bytes both ways without reading them, so TLS runs end to
end; a request in absolute form (`POST http://host:port/path`) is forwarded to that host
(counted in `forwarded`) and the rest of that client connection is relayed to the same
place, which is how a pooled client uses it (one upstream per connection). With
`credentials` set it answers 407 to a request without that `Proxy-Authorization`. Every
request head it read is kept in `heads`. It only ever connects to loopback addresses, so a
test cannot send traffic anywhere else through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from urllib.parse import urlsplit

__all__ = ["FakeProxy"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class FakeProxy:
    """`async with FakeProxy() as proxy:` serves on `proxy.url` until the block ends."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.tunnels = 0
        self.forwarded = 0
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
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if not self._authorized(headers.get("proxy-authorization")):
            self.refused += 1
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
        else:
            parts = urlsplit(target)
            host, port = parts.hostname or "", str(parts.port or 80)
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
        if method == "CONNECT":
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            self.forwarded += 1
            parts = urlsplit(target)
            origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            kept = [f"{method} {origin} {_version}"] + [
                line for line in lines[1:] if not line.lower().startswith("proxy-authorization:")
            ]
            up_writer.write("\r\n".join(kept).encode("latin-1"))
        # A forwarding proxy strips its own credential from every request on the connection;
        # later requests are relayed as bytes, so their Proxy-Authorization lines are cut out.
        strip = method != "CONNECT"
        try:
            await asyncio.gather(_pipe(reader, up_writer, strip), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    def _authorized(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        user, password = self._credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return header == f"Basic {expected}"


_PROXY_CREDENTIAL = re.compile(rb"\r\nProxy-Authorization:[^\r]*", re.IGNORECASE)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, strip: bool = False
) -> None:
    """Copy until the reader's end, then pass the end on."""
    try:
        while data := await reader.read(65536):
            writer.write(_PROXY_CREDENTIAL.sub(b"", data) if strip else data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
