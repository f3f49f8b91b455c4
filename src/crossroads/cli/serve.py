"""`crossroads serve`: check the config, claim the address, then run the gateway.

The listening socket is bound here, before the app is built and the model starts loading,
so a port that is taken (or an address that is not this machine's) ends the command at
once with one line saying what to change, and the socket is handed to uvicorn as it is.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from crossroads.cli.common import ConfigOption, fail, load, note, warning
from crossroads.environ import HOST_ENV, MASTER_KEY_ENV, PORT_ENV

if TYPE_CHECKING:
    import socket

    from crossroads.config import Config

__all__ = ["address", "serve"]

# uvicorn's exit status when the app fails to start.
_STARTUP_FAILURE = 3


def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None,
        typer.Option(
            envvar=HOST_ENV, help="Address to bind (default: [server] host, else 127.0.0.1)."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            envvar=PORT_ENV,
            min=0,
            max=65535,
            help="Port to bind (default: [server] port, else 8000; 0 picks a free one).",
        ),
    ] = None,
) -> None:
    """Run the gateway.

    Without a config file it serves the model `local` — Gemma 3 270M on the embedded
    llama.cpp engine, no network or key needed — on 127.0.0.1:8000. With `make serve`,
    pass options as ARGS: make serve ARGS="--port 8080".

    Exit status: 2 for a config that cannot be served (or a public address without keys),
    1 when the address cannot be bound (e.g. the port is taken), 3 when the app fails to
    start.
    """
    loaded, _ = load(config)
    if loaded is None:
        from crossroads.config import ConfigError, default_config

        try:
            loaded = default_config()
        except ConfigError as exc:  # the `local` extra is not installed
            raise fail(str(exc)) from None
        note(
            "No config file: serving model 'local', Gemma 3 270M on the embedded llama.cpp "
            "engine (a tiny base model: good for trying features, not for good answers)."
        )
    _run(loaded, host, port)


def address(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets as URLs need it (`[::1]:8000`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _run(config: Config, host: str | None, port: int | None) -> None:
    import gc
    import logging

    import uvicorn

    from crossroads.cli.configuration import check_router
    from crossroads.server import create_app
    from crossroads.server.auth import is_loopback, loopback_only, master_key_from_env

    logging.basicConfig(format="%(levelname)s:     %(message)s")
    logging.getLogger("crossroads").setLevel(logging.INFO)
    try:
        warnings = check_router(config)
    except ValueError as exc:
        raise fail(f"Cannot serve: router: {exc}") from None
    for text in warnings:
        warning(f"router: {text}")
    bind_host = host or config.server.host
    bind_port = config.server.port if port is None else port
    open_to_loopback = loopback_only(config.keys, master_key_from_env())
    if open_to_loopback and not is_loopback(bind_host):
        raise fail(
            f"Refusing to bind {address(bind_host, bind_port)}: no API keys are configured, so "
            "the gateway would be open to anyone who can reach it. Add [[keys]] to the config, "
            f"set {MASTER_KEY_ENV} to use virtual keys, or bind 127.0.0.1."
        )
    listener = _listen(bind_host, bind_port)
    bound_port = int(listener.getsockname()[1])
    note(
        f"Crossroads on http://{address(bind_host, bound_port)}/v1 — models: "
        + (", ".join(config.models) or "none")
        + (" — no keys configured: loopback clients only" if open_to_loopback else "")
    )
    # Everything start-up makes lives as long as the process: once the app is ready it is
    # moved out of the collector's view, so full collections have far less to walk.
    app = create_app(config, freeze_heap=True)
    # A young generation of 10,000 objects instead of 700. Log records wait up to a flush
    # interval for the writer, so at the default they survived into the old generation by
    # the thousand and set off a full collection (about 30 ms) every ~1,400 requests: the
    # collector took a fifth of the CPU under load. Measured at c64 against the mock
    # upstream: 170 -> 150 us of CPU per request, full collections from 25 to about 1 per
    # 40k requests; a young collection now pauses about 2 ms every few hundred requests.
    gc.set_threshold(10_000, 10, 10)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=bind_host,
            port=bound_port,
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            http="httptools",
            access_log=config.server.access_log,
            log_level="info",
            timeout_graceful_shutdown=30,
        )
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once shut down
        server.run(sockets=[listener])
    if not server.started:
        raise typer.Exit(_STARTUP_FAILURE)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port`, or exit 1 with one line naming what to change."""
    import socket  # here: every command imports this module to build the help

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise fail(
            f"Cannot listen on {address(host, port)}: {_bind_problem(exc, port)}", 1
        ) from None
    return listener


def _bind_problem(exc: OSError, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use by another program. Choose another port with "
            f'--port (make serve ARGS="--port 8080"), ${PORT_ENV}, or [server] port in the '
            "config."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's. Use --host with one that is."
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges). Use a port above 1023."
    import socket

    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror}). Use --host with an IP address or known name."
    return f"{exc.strerror or exc}."
