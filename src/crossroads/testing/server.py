"""Serve an ASGI app with uvicorn on a background thread, for tests and benchmarks.

The app runs exactly as in production (uvicorn, httptools, its own event loop and
lifespan); the test talks to it over a real socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import uvicorn

__all__ = ["ServedApp", "free_port", "serve_in_thread"]

T = TypeVar("T")


# Ports this process has handed out. The kernel may offer a port again as soon as the probe
# socket closes, so callers that ask for several before any server binds them (a benchmark
# starting a dozen gateways) could otherwise get the same one twice: one server then fails to
# bind and its readiness check is answered by the other.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now and that this process has not handed
    out before, for a server started in a child process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class ServedApp:
    def __init__(self, server: uvicorn.Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coroutine` on the server's own event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets
        port: int = sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app(self) -> Any:
        return self.server.config.app


@contextlib.contextmanager
def serve_in_thread(app: Any, *, port: int = 0, timeout: float = 30.0) -> Iterator[ServedApp]:
    """Start `app` on 127.0.0.1:`port` (0 = any free port); stop it on exit."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="crossroads-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server thread exited during start-up (see its log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("the server did not start in time")
        time.sleep(0.01)
    try:
        yield ServedApp(server, loop)
    finally:
        server.should_exit = True
        thread.join(timeout)
