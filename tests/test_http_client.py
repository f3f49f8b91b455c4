"""The upstream HTTP client against raw loopback servers that script every byte they send."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from crossroads.providers import http_connection
from crossroads.providers.http_client import (
    ConnectFailed,
    ConnectionDropped,
    HttpClient,
    ProtocolViolation,
    ReadTimedOut,
)
from crossroads.testing.server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback TCP server running `handler` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def json_answer(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def keep_answering(answer: bytes) -> Callable[[RawServer], Handler]:
    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(answer)
                await writer.drain()

        return handler

    return make


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient(connect_timeout=2, read_timeout=2, max_connections=8)
    yield http
    await http.aclose()


async def serve(make: Callable[[RawServer], Handler]) -> RawServer:
    server = RawServer(lambda r, w: asyncio.sleep(0))
    server.handler = make(server)
    return server


async def test_posts_reuse_one_keep_alive_connection(client: HttpClient) -> None:
    async with await serve(keep_answering(json_answer())) as server:
        for _ in range(5):
            response = await client.post(server.url, {"Authorization": "Bearer k"}, b"{}")
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"ok": true}'
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in request
    assert b"\r\nAuthorization: Bearer k\r\n" in request
    assert request.endswith(b"\r\nContent-Length: 2\r\n\r\n{}")


async def test_chunked_body_arrives_piece_by_piece_before_it_ends(client: HttpClient) -> None:
    more = asyncio.Event()

    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await more.wait()
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            await writer.drain()
            await server.read_request(reader)  # the connection is reused for the next call
            writer.write(json_answer())
            await writer.drain()

        return handler

    async with await serve(make) as server:
        response = await client.post(server.url, {}, b"{}")
        assert await response.next_chunk() == b"first"  # while the upstream still holds on
        more.set()
        assert await response.next_chunk() == b"second"
        assert await response.next_chunk() is None
        again = await client.post(server.url, {}, b"{}")
        assert await again.read() == b'{"ok": true}'
    assert server.connections == 1


async def test_body_ended_by_closing_the_connection_is_complete(client: HttpClient) -> None:
    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
            await writer.drain()

        return handler

    async with await serve(make) as server:
        response = await client.post(server.url, {}, b"{}")
        assert await response.read() == b"all of it"
        again = await client.post(server.url, {}, b"{}")  # a new connection, not the closed one
        assert await again.read() == b"all of it"
    assert server.connections == 2


async def test_drop_mid_body_and_before_the_head_are_told_apart(client: HttpClient) -> None:
    def mid_body(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()

        return handler

    def before_head(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)

        return handler

    async with await serve(mid_body) as server:
        response = await client.post(server.url, {}, b"{}")
        with pytest.raises(ConnectionDropped) as dropped:
            await response.read()
        assert dropped.value.answered
    async with await serve(before_head) as server:
        with pytest.raises(ConnectionDropped) as dropped:
            await client.post(server.url, {}, b"{}")
        assert not dropped.value.answered


async def test_a_stalled_upstream_times_out_on_read() -> None:
    http = HttpClient(connect_timeout=2, read_timeout=0.2, max_connections=4)

    def stall_after_head(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
            await writer.drain()
            await asyncio.sleep(5)

        return handler

    def silent(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(5)

        return handler

    try:
        async with await serve(stall_after_head) as server:
            response = await http.post(server.url, {}, b"{}")
            assert await response.next_chunk() == b"hi"
            with pytest.raises(ReadTimedOut, match="read_timeout"):
                await response.next_chunk()
        async with await serve(silent) as server:
            with pytest.raises(ReadTimedOut):
                await http.post(server.url, {}, b"{}")
    finally:
        await http.aclose()


async def test_a_refused_connection_fails_to_connect(client: HttpClient) -> None:
    with pytest.raises(ConnectFailed, match="cannot connect") as failed:
        await client.post(f"http://127.0.0.1:{free_port()}/v1/x", {}, b"{}")
    assert not failed.value.timed_out
    # The failed attempt gave its place in the pool back.
    async with await serve(keep_answering(json_answer())) as server:
        for _ in range(10):
            await (await client.post(server.url, {}, b"{}")).read()


async def test_garbage_is_a_protocol_violation(client: HttpClient) -> None:
    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"SMTP ready\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(1)

        return handler

    async with await serve(make) as server:
        with pytest.raises(ProtocolViolation):
            await client.post(server.url, {}, b"{}")


async def test_connections_never_exceed_the_limit() -> None:
    http = HttpClient(connect_timeout=2, read_timeout=2, max_connections=2)

    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                await asyncio.sleep(0.02)
                writer.write(json_answer())
                await writer.drain()

        return handler

    async def call(url: str) -> bytes:
        return await (await http.post(url, {}, b"{}")).read()

    try:
        async with await serve(make) as server:
            bodies = await asyncio.gather(*(call(server.url) for _ in range(12)))
        assert bodies == [b'{"ok": true}'] * 12
        assert server.most_open == 2
    finally:
        await http.aclose()


async def test_a_stream_left_early_closes_its_connection(client: HttpClient) -> None:
    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
                await writer.drain()
                await asyncio.sleep(0.3)
                writer.write(b"0\r\n\r\n")
                await writer.drain()

        return handler

    async with await serve(make) as server:
        response = await client.post(server.url, {}, b"{}")
        assert await response.next_chunk() == b"one"
        response.release()  # the rest of this answer must not be read as the next one's
        again = await client.post(server.url, {}, b"{}")
        assert await again.next_chunk() == b"one"
        again.release()
    assert server.connections == 2


async def test_a_large_body_read_slowly_arrives_whole(client: HttpClient) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: past the high-water mark, so reading pauses

    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(json_answer(body))
            await writer.drain()
            await asyncio.sleep(1)

        return handler

    async with await serve(make) as server:
        response = await client.post(server.url, {}, b"{}")
        received = bytearray()
        while (chunk := await response.next_chunk()) is not None:
            received += chunk
            await asyncio.sleep(0)
    assert bytes(received) == body


@pytest.mark.parametrize("size", [1 << 20, 5 << 20])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_large_body_read_whole_arrives(
    client: HttpClient, size: int, chunked: bool
) -> None:
    # Far past the high-water mark: `read` must not wait for a consumer that never comes.
    body = b"x" * size

    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if chunked:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for k in range(0, size, 65536):
                    piece = body[k : k + 65536]
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(json_answer(body))
            await writer.drain()
            await asyncio.sleep(1)

        return handler

    async with await serve(make) as server:
        response = await client.post(server.url, {}, b"{}")
        async with asyncio.timeout(1):
            assert await response.read() == body


async def test_a_header_with_a_line_break_is_refused(client: HttpClient) -> None:
    async with await serve(keep_answering(json_answer())) as server:
        with pytest.raises(ValueError, match="line break"):
            await client.post(server.url, {"Authorization": "Bearer k\r\nX-Evil: 1"}, b"{}")
    assert server.connections == 0


async def test_an_idle_connection_the_upstream_closed_is_not_reused(client: HttpClient) -> None:
    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(json_answer())  # keep-alive promised, then closed while idle
            await writer.drain()
            await asyncio.sleep(0.05)

        return handler

    async with await serve(make) as server:
        assert await (await client.post(server.url, {}, b"{}")).read() == b'{"ok": true}'
        await asyncio.sleep(0.2)
        assert await (await client.post(server.url, {}, b"{}")).read() == b'{"ok": true}'
    assert server.connections == 2


async def test_a_cancelled_call_closes_its_connection(client: HttpClient) -> None:
    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(0.3)
            writer.write(json_answer(b'{"late": true}'))
            await writer.drain()
            await asyncio.sleep(1)

        return handler

    async with await serve(make) as server:
        call = asyncio.ensure_future(client.post(server.url, {}, b"{}"))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        response = await client.post(server.url, {}, b"{}")  # never the late answer
        assert await response.read() == b'{"late": true}'
    assert server.connections == 2


async def test_a_stream_ended_early_keeps_its_connection_if_the_body_end_follows(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_connection, "_LINGER_S", 0.2)
    late = asyncio.Event()

    def make(server: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                writer.write(b"e\r\ndata: [DONE]\n\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"0\r\n\r\n" if not late.is_set() else b"")
                await writer.drain()
                if late.is_set():
                    await asyncio.sleep(1)

        return handler

    async with await serve(make) as server:
        for _ in range(3):  # the body's end follows: one connection serves every call
            response = await client.post(server.url, {}, b"{}")
            assert await response.next_chunk() == b"data: [DONE]\n\n"
            response.release(ended=True)
            await asyncio.sleep(0.1)  # the body's end arrives; the connection is parked
        assert server.connections == 1
        late.set()  # now the body never ends: the connection is given up, not reused
        response = await client.post(server.url, {}, b"{}")
        await response.next_chunk()
        response.release(ended=True)
        await asyncio.sleep(0.4)
        late.clear()
        assert await (await client.post(server.url, {}, b"{}")).next_chunk() is not None
    assert server.connections == 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for `localhost`, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_verified_and_kept_alive(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=cert)
    connections = 0
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                requests.append(head + await reader.readexactly(2))
                writer.write(json_answer())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    url = f"https://localhost:{port}/v1/chat/completions"
    trusted = HttpClient(connect_timeout=5, read_timeout=5, max_connections=2, tls=trusting)
    default = HttpClient(connect_timeout=5, read_timeout=5, max_connections=2)
    try:
        for _ in range(3):
            assert await (await trusted.post(url, {}, b"{}")).read() == b'{"ok": true}'
        assert connections == 1
        assert f"\r\nHost: localhost:{port}\r\n".encode() in requests[0]
        assert b"\r\nAccept-Encoding: identity\r\n" in requests[0]
        # An unknown issuer is refused by the system's trusted roots: nothing is sent.
        with pytest.raises(ConnectFailed, match="certificate"):
            await default.post(url, {}, b"{}")
        assert len(requests) == 3
    finally:
        await trusted.aclose()
        await default.aclose()
        server.close()
