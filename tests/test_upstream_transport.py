"""Upstream calls through a real CONNECT proxy, to TLS upstreams signed by a throwaway CA
(one of them requiring a client certificate), and over kept-alive connections the upstream
closes: every server is real and listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.http_client import ConnectionDropped, HttpClient
from crossroads.providers.openai.config import OpenAIProviderConfig
from crossroads.providers.openai.provider import OpenAIProvider
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.proxy import FakeProxy
from crossroads.testing.tls_terminator import TlsTerminator
from tests.conftest import API_KEY, running_gateway

USER = [{"role": "user", "content": "hi"}]
REPLY = "Hello from the fake upstream."


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CA's certificate and a client certificate it signed, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    client = ca.issue_cert("gateway.crossroads.test")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    client.cert_chain_pems[0].write_to_path(paths["cert"])
    client.private_key_pem.write_to_path(paths["key"])
    return paths


def server_tls(ca: trustme.CA, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if require_client_cert:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def tls_upstream(ca: trustme.CA) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(tls=server_tls(ca))
    await fake.start()
    yield fake
    await fake.stop()


class MutualTls:
    """A plain fake upstream behind a TLS front that requires a client certificate."""

    def __init__(self, fake: FakeOpenAI, front: TlsTerminator) -> None:
        self.fake = fake
        self.front = front
        self.base_url = front.url
        self.requests = fake.requests


@pytest.fixture
async def mtls_upstream(ca: trustme.CA) -> AsyncIterator[MutualTls]:
    fake = FakeOpenAI()
    await fake.start()
    with TlsTerminator(server_tls(ca, require_client_cert=True), fake.port) as front:
        yield MutualTls(fake, front)
    await fake.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[FakeProxy]:
    async with FakeProxy() as served:
        yield served


def provider(url: str, **settings: Any) -> OpenAIProvider:
    config = parse_config({"providers": {"up": {"base_url": url, "read_timeout": 5, **settings}}})
    provider_config = config.providers["up"]
    assert isinstance(provider_config, OpenAIProviderConfig)
    return OpenAIProvider("up", provider_config)


async def ask(upstream: OpenAIProvider, behaviour: str = "fixed") -> str:
    answer = await upstream.complete(UpstreamCall({"model": behaviour, "messages": USER}))
    content: str = answer["choices"][0]["message"]["content"]
    return content


# --- TLS ---------------------------------------------------------------------------------


async def test_a_ca_bundle_verifies_a_privately_signed_upstream(
    tls_upstream: FakeOpenAI, pki: dict[str, str]
) -> None:
    trusted = provider(tls_upstream.base_url, ca_bundle=pki["ca"])
    await trusted.start()
    try:
        assert tls_upstream.base_url.startswith("https://127.0.0.1:")
        assert await ask(trusted) == REPLY
        assert await ask(trusted) == REPLY
    finally:
        await trusted.aclose()
    assert len(tls_upstream.requests) == 2


async def test_without_the_ca_bundle_the_call_fails_with_a_tls_error(
    tls_upstream: FakeOpenAI,
) -> None:
    untrusting = provider(tls_upstream.base_url)
    await untrusting.start()
    try:
        with pytest.raises(UpstreamError) as failed:
            await ask(untrusting)
    finally:
        await untrusting.aclose()
    error = failed.value
    assert (error.failure, error.code) == ("connection", "upstream_tls_error")
    assert "could not be verified: unable to get local issuer certificate" in error.message
    assert "providers.up.ca_bundle" in error.message
    assert tls_upstream.requests == []  # nothing was sent to an unverified upstream


async def test_verify_false_skips_verification_and_says_so_loudly(
    tls_upstream: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    blind = provider(tls_upstream.base_url, verify=False)
    with caplog.at_level("WARNING", logger="crossroads"):
        await blind.start()
    try:
        assert await ask(blind) == REPLY
    finally:
        await blind.aclose()
    assert "TLS verification is OFF" in caplog.text


async def test_a_client_certificate_is_presented_to_an_upstream_that_requires_one(
    mtls_upstream: MutualTls, pki: dict[str, str]
) -> None:
    with_cert = provider(
        mtls_upstream.base_url,
        ca_bundle=pki["ca"],
        client_cert=pki["cert"],
        client_key=pki["key"],
    )
    without = provider(mtls_upstream.base_url, ca_bundle=pki["ca"])
    await with_cert.start()
    await without.start()
    try:
        assert await ask(with_cert) == REPLY
        with pytest.raises(UpstreamError) as refused:
            await ask(without)
    finally:
        await with_cert.aclose()
        await without.aclose()
    # TLS 1.3 refuses a missing client certificate after the handshake, so the client sees
    # the connection closed by a TLS alert before any answer: a TLS error saying what to set.
    error = refused.value
    assert (error.failure, error.code) == ("connection", "upstream_tls_error")
    assert "'certificate required'" in error.message
    assert "set providers.up.client_cert and providers.up.client_key" in error.message
    assert len(mtls_upstream.requests) == 1


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
async def test_a_client_certificate_the_upstream_does_not_trust_is_a_tls_error(
    ca: trustme.CA, pki: dict[str, str], tmp_path: Path, tls12: bool
) -> None:
    stranger = trustme.CA().issue_cert("gateway.crossroads.test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    stranger.cert_chain_pems[0].write_to_path(str(cert))
    stranger.private_key_pem.write_to_path(str(key))
    context = server_tls(ca, require_client_cert=True)
    if tls12:  # TLS 1.2 refuses the certificate inside the handshake
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    fake = FakeOpenAI()
    await fake.start()
    with TlsTerminator(context, fake.port) as front:
        untrusted = provider(
            front.url, ca_bundle=pki["ca"], client_cert=str(cert), client_key=str(key)
        )
        await untrusted.start()
        try:
            with pytest.raises(UpstreamError) as refused:
                await ask(untrusted)
        finally:
            await untrusted.aclose()
            await fake.stop()
    error = refused.value
    assert (error.failure, error.code) == ("connection", "upstream_tls_error")
    assert "'up'" in error.message and "unknown ca" in error.message.lower()
    assert "refused the client certificate in providers.up.client_cert" in error.message
    assert fake.requests == []


def test_the_gateway_answers_a_tls_failure_with_a_502_naming_the_provider_and_the_fix(
    ca: trustme.CA, pki: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeOpenAI(tls=server_tls(ca)).running_in_thread() as private,
        FakeOpenAI().running_in_thread() as plain,
        TlsTerminator(server_tls(ca, require_client_cert=True), plain.port) as mutual,
    ):
        config = parse_config(
            {
                "storage": {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'log.db'}"},
                "keys": [{"name": "main", "key": API_KEY}],
                "providers": {
                    "private": {"base_url": private.base_url},
                    "mutual": {"base_url": mutual.url, "ca_bundle": pki["ca"]},
                },
                "models": {
                    "untrusted": {"deployments": [{"provider": "private", "model": "fixed"}]},
                    "no-cert": {"deployments": [{"provider": "mutual", "model": "fixed"}]},
                },
            }
        )
        with running_gateway(config) as served:
            for model, provider_name, fix in (
                ("untrusted", "private", "providers.private.ca_bundle"),
                ("no-cert", "mutual", "providers.mutual.client_cert"),
            ):
                response = httpx.post(
                    f"{served.url}/v1/chat/completions",
                    json={"model": model, "messages": USER},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                assert response.status_code == 502, response.text
                error = response.json()["error"]
                assert error["code"] == "upstream_tls_error"
                assert error["type"] == "upstream_error"
                assert f"'{provider_name}'" in error["message"] and fix in error["message"]


# --- proxies -----------------------------------------------------------------------------


async def test_https_goes_through_one_connect_tunnel_kept_alive(
    tls_upstream: FakeOpenAI, proxy: FakeProxy, pki: dict[str, str]
) -> None:
    proxied = provider(tls_upstream.base_url, ca_bundle=pki["ca"], proxy=proxy.url)
    await proxied.start()
    try:
        for _ in range(3):
            assert await ask(proxied) == REPLY
    finally:
        await proxied.aclose()
    assert proxy.tunnels == 1  # one tunnel serves every call: TLS inside it, kept alive
    assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{tls_upstream.port} HTTP/1.1\r\n".encode())
    assert len(tls_upstream.requests) == 3
    assert tls_upstream.requests[0]["headers"]["host"] == f"127.0.0.1:{tls_upstream.port}"


async def test_the_environment_chooses_the_proxy_and_no_proxy_skips_it(
    tls_upstream: FakeOpenAI,
    proxy: FakeProxy,
    pki: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    via_env = provider(tls_upstream.base_url, ca_bundle=pki["ca"])
    await via_env.start()  # the environment is read when a provider starts
    monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.0/8")
    bypassing = provider(tls_upstream.base_url, ca_bundle=pki["ca"])
    await bypassing.start()
    try:
        assert await ask(via_env) == REPLY
        assert proxy.tunnels == 1
        assert await ask(bypassing) == REPLY
        assert proxy.tunnels == 1  # direct: 127.0.0.0/8 is in NO_PROXY
    finally:
        await via_env.aclose()
        await bypassing.aclose()
    assert len(tls_upstream.requests) == 2


async def test_plain_http_is_forwarded_in_absolute_form_with_proxy_credentials(
    upstream: FakeOpenAI,
) -> None:
    async with FakeProxy(credentials=("gw", "p@ss")) as guarded:
        authorized = provider(upstream.base_url, proxy=f"http://gw:p%40ss@127.0.0.1:{guarded.port}")
        await authorized.start()
        try:
            assert await ask(authorized) == REPLY
            assert await ask(authorized) == REPLY
            stream = authorized.stream(
                UpstreamCall({"model": "fixed", "messages": USER, "stream": True})
            )
            pieces = [c async for c in stream]
            assert await ask(authorized) == REPLY
        finally:
            await authorized.aclose()
        # One kept-alive client connection; every request on it read and forwarded.
        assert guarded.connections == 1
        assert (guarded.forwarded, guarded.tunnels, guarded.refused) == (4, 0, 0)
        path = f"{upstream.base_url}/chat/completions"
        assert all(h.startswith(f"POST {path} HTTP/1.1\r\n".encode()) for h in guarded.heads)
        assert len(guarded.heads) == 4 and len(pieces) > 1
        # The proxy's credential is the proxy's: the upstream never sees it.
        assert all("proxy-authorization" not in r["headers"] for r in upstream.requests)
        assert len(upstream.requests) == 4


async def test_a_proxy_refusing_the_tunnel_is_a_clear_connection_error(
    tls_upstream: FakeOpenAI, pki: dict[str, str]
) -> None:
    async with FakeProxy(credentials=("gw", "secret")) as guarded:
        anonymous = provider(tls_upstream.base_url, ca_bundle=pki["ca"], proxy=guarded.url)
        await anonymous.start()
        try:
            with pytest.raises(UpstreamError) as refused:
                await ask(anonymous)
        finally:
            await anonymous.aclose()
    assert refused.value.failure == "connection"
    assert "the proxy refused the tunnel: 407 Proxy Authentication Required" in (
        refused.value.message
    )
    assert f"through the proxy {guarded.url}" in refused.value.message
    assert tls_upstream.requests == []


# --- a kept-alive connection the upstream closes ------------------------------------------


async def test_a_connection_closed_by_the_upstream_as_it_was_reused_is_retried_once(
    upstream: FakeOpenAI,
) -> None:
    client = HttpClient(connect_timeout=2, read_timeout=5, max_connections=4)
    url = f"{upstream.base_url}/chat/completions"
    body = b'{"model": "fixed+drop_reused", "messages": [{"role": "user", "content": "hi"}]}'
    try:
        for _ in range(3):
            response = await client.post(url, {"Content-Type": "application/json"}, body)
            assert response.status == 200
            await response.read()
    finally:
        await client.aclose()
    # Each reused connection was closed unanswered and the call replayed on a fresh one.
    assert client.stale_retries == 2
    assert len(upstream.requests) == 5


Handler = Any


async def serve_raw(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A loopback server running `handler(reader, writer, connection_number, requests)`."""
    seen: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(0)
        number = len(seen)
        try:
            await handler(reader, writer, number, seen)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions", seen


async def read_request(reader: asyncio.StreamReader, seen: list[int], number: int) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    seen[number - 1] += 1


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


async def test_no_replay_after_any_byte_of_the_answer_or_more_than_once() -> None:
    async def partial_on_reuse(r: Any, w: Any, number: int, seen: list[int]) -> None:
        await read_request(r, seen, number)
        w.write(OK)
        await read_request(r, seen, number)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # a byte arrived: the upstream answered
        await w.drain()

    async def drop_all_but_the_first(r: Any, w: Any, number: int, seen: list[int]) -> None:
        await read_request(r, seen, number)
        if number == 1:
            w.write(OK)
            await read_request(r, seen, number)

    client = HttpClient(connect_timeout=2, read_timeout=2, max_connections=4)
    try:
        server, url, seen = await serve_raw(partial_on_reuse)
        assert await (await client.post(url, {}, b"{}")).read() == b"{}"
        with pytest.raises(ConnectionDropped):
            await client.post(url, {}, b"{}")
        assert seen == [2]  # not replayed
        server.close()
        server, url, seen = await serve_raw(drop_all_but_the_first)
        assert await (await client.post(url, {}, b"{}")).read() == b"{}"
        with pytest.raises(ConnectionDropped):
            await client.post(url, {}, b"{}")
        assert seen == [2, 1]  # replayed once, on a fresh connection, and no more
        assert client.stale_retries == 1
        server.close()
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def stale_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeOpenAI]]:
    with FakeOpenAI().running_in_thread() as fake:
        database = tmp_path_factory.mktemp("db") / "log.db"
        config = parse_config(
            {
                "storage": {"database_url": f"sqlite+aiosqlite:///{database}"},
                "keys": [{"name": "main", "key": API_KEY}],
                "providers": {"fake": {"base_url": fake.base_url}},
                "models": {
                    "m": {"deployments": [{"provider": "fake", "model": "fixed+drop_reused"}]}
                },
                "routing": {"breaker": {"consecutive_failures": 1}},
            }
        )
        with running_gateway(config) as served:
            yield served.url, fake


def test_the_silent_retry_is_no_attempt_and_no_breaker_failure(
    stale_gateway: tuple[str, FakeOpenAI],
) -> None:
    url, fake = stale_gateway
    with OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0) as sdk:
        for _ in range(3):
            completion = sdk.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
            assert completion.choices[0].message.content == REPLY
            attempts = completion.model_extra["routing"]["attempts"]
            assert [a["status"] for a in attempts] == [200]
        stream = sdk.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY
    stats = httpx.get(
        f"{url}/v1/providers/stats", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    row = stats["deployments"]["fake/fixed+drop_reused"]
    assert row["errors"] == 0
    assert row["breaker"]["state"] == "closed"
    assert row["breaker"]["window_errors"] == 0
    assert len(fake.requests) == 4 + 3  # every reused connection was dropped once
