"""A TLS-terminating front for a plain-HTTP fake upstream, as nginx or Envoy would be.

The fake upstreams can serve TLS themselves (aiohttp on asyncio), but an asyncio server that
rejects a client certificate drops the connection without sending the TLS alert, so a client
cannot tell a refused certificate from a crash. Real TLS servers send the alert
("certificate required", "unknown ca"). This front does the handshake on blocking sockets,
where OpenSSL writes the alert before the connection closes, then relays the plaintext both
ways to the fake upstream. It listens on 127.0.0.1 and connects only to the upstream given.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from types import TracebackType

__all__ = ["TlsTerminator"]


class TlsTerminator:
    """`with TlsTerminator(context, upstream_port) as front:` serves `front.url` (https)."""

    def __init__(self, context: ssl.SSLContext, upstream_port: int) -> None:
        self._context = context
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.handshake_failures: list[str] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> TlsTerminator:
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        # The socket takes over `raw`'s descriptor; the handshake is run separately so that a
        # failed one leaves it open to be closed gently.
        secure = self._context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        try:
            secure.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            # OpenSSL has sent the client the alert already; the connection is over.
            self.handshake_failures.append(getattr(exc, "reason", None) or str(exc))
            _close_gently(secure)
            return
        try:
            upstream = socket.create_connection(self._upstream, timeout=10)
        except OSError:
            secure.close()
            return
        self._spawn(_relay, upstream, secure)
        _relay(secure, upstream)


def _relay(source: socket.socket, target: socket.socket) -> None:
    """Copy until `source` ends, then close both (the other direction's relay ends too)."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()


def _close_gently(raw: socket.socket) -> None:
    """Close after the client has read the alert: closing with its request still unread
    would reset the connection, and a reset can overtake the alert."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(2)
        while raw.recv(65536):
            pass
    raw.close()
