"""Opening a connection through an HTTP proxy's CONNECT tunnel.

An `https://` upstream behind a proxy is reached by asking the proxy to `CONNECT` to it,
then running TLS with the upstream inside the tunnel, so the proxy relays bytes it cannot
read and the upstream's certificate is verified as on a direct connection. This module
does the part before TLS: it writes the CONNECT request and reads the proxy's answer; the
client then upgrades the same transport with `loop.start_tls`.
"""

from __future__ import annotations

import asyncio
from typing import cast

from crossroads.providers.proxy import Proxy

__all__ = ["TunnelRefused", "open_tunnel"]

_MAX_HEAD = 64 * 1024


class TunnelRefused(Exception):
    """The proxy answered the CONNECT with something other than 2xx, or not as HTTP."""


class _Handshake(asyncio.Protocol):
    """Writes the CONNECT request and collects the proxy's answer head."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._head = bytearray()
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end >= 0:
            assert self.transport is not None
            self.transport.pause_reading()  # what follows is the upstream's, read by TLS
            if end + 4 != len(self._head):
                self.answered.set_exception(
                    TunnelRefused("the proxy sent bytes after its CONNECT answer")
                )
            else:
                self.answered.set_result(bytes(self._head[:end]))
        elif len(self._head) > _MAX_HEAD:
            self.answered.set_exception(TunnelRefused("the proxy's CONNECT answer is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            reason = f": {exc}" if exc else ""
            self.answered.set_exception(
                ConnectionResetError(f"the proxy closed the connection during CONNECT{reason}")
            )


async def open_tunnel(proxy: Proxy, host: str, port: int) -> asyncio.Transport:
    """A transport to `proxy` on which every byte now goes to `host:port`.

    Raises `OSError` when the proxy cannot be reached or hangs up, `TunnelRefused` when it
    refuses. The caller bounds the wait (the connect timeout covers the tunnel too).
    """
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    loop = asyncio.get_running_loop()
    transport, handshake = await loop.create_connection(
        lambda: _Handshake(request), proxy.host, proxy.port
    )
    try:
        head = await handshake.answered
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise TunnelRefused(f"the proxy's answer to CONNECT is not HTTP: {status_line!r}")
        if not 200 <= int(parts[1]) < 300:
            raise TunnelRefused(f"the proxy refused the tunnel: {status_line.partition(' ')[2]}")
    except BaseException:
        transport.close()
        raise
    return transport
