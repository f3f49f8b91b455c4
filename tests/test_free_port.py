"""`free_port` never hands out a port twice in one process, even when the kernel offers the
same one again before any server has bound it (benchmarks ask for a dozen ports first)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from crossroads.testing import server


class _OfferedPorts:
    """Stands in for `socket.socket`: each probe socket is offered the next port in turn."""

    def __init__(self, ports: Iterator[int]) -> None:
        self.ports = ports

    def __call__(self) -> _OfferedPorts:
        self.port = next(self.ports)
        return self

    def __enter__(self) -> _OfferedPorts:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        assert address == ("127.0.0.1", 0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_offered_again_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_handed_out", set())
    offered = _OfferedPorts(iter([40001, 40001, 40001, 40002]))
    # Only the module `free_port` reads is replaced, not `socket.socket` for the whole process.
    monkeypatch.setattr(server, "socket", SimpleNamespace(socket=offered))
    assert server.free_port() == 40001
    assert server.free_port() == 40002


def test_real_ports_are_distinct_and_free() -> None:
    ports = [server.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
