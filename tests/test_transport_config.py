"""Which proxy an upstream is reached through, and transport settings checked at load time."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from crossroads.config import ConfigError, parse_config
from crossroads.providers.proxy import Proxy, ProxyRules, bypasses_proxy, parse_proxy


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "api.openai.com", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("example.com", "example.com.evil.net", 443, False),
        ("Example.COM", "API.example.com", 443, True),
        ("localhost, 10.0.0.0/8", "10.1.2.3", 80, True),
        ("10.0.0.0/8", "11.1.2.3", 80, False),
        ("127.0.0.1", "127.0.0.1", 8000, True),
        ("fd00::/8", "fd00::5", 443, True),
        ("[::1]:8000", "::1", 8000, True),
        ("[::1]:8000", "::1", 9000, False),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("internal  other.net", "x.other.net", 443, True),  # spaces separate too
        ("", "example.com", 443, False),
        ("localhost", "127.0.0.1", 80, False),  # names are not resolved
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    assert bypasses_proxy(no_proxy, host, port) is bypassed


def test_a_proxy_url_carries_its_credentials_as_basic_authorization() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy.internal:3128")
    assert (proxy.host, proxy.port, proxy.shown) == (
        "proxy.internal",
        3128,
        "http://proxy.internal:3128",
    )
    assert proxy.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert parse_proxy("proxy.internal:8080") == Proxy(
        "proxy.internal", 8080, None, "http://proxy.internal:8080"
    )
    assert parse_proxy("http://proxy.internal").port == 80


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socks5://127.0.0.1:1080", "socks5:// proxies are not supported"),
        ("https://proxy.internal:443", "https:// proxies are not supported"),
        ("http://:3128", "needs a host"),
        ("http://proxy:notaport", "not a proxy URL"),
    ],
)
def test_unusable_proxy_urls_say_why(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_proxy(url)


def test_the_environment_lower_case_first_and_no_proxy() -> None:
    environ = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:2",
        "HTTP_PROXY": "http://plain:3",
        "NO_PROXY": "internal.net",
    }
    rules = ProxyRules.choose(None, environ)
    assert rules.for_target(True, "api.openai.com", 443) == parse_proxy("http://lower:2")
    assert rules.for_target(False, "api.openai.com", 80) == parse_proxy("http://plain:3")
    assert rules.for_target(True, "llm.internal.net", 443) is None
    assert ProxyRules.choose(None, {}).for_target(True, "api.openai.com", 443) is None


def test_the_providers_own_setting_overrides_the_environment() -> None:
    environ = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*"}
    configured = ProxyRules.choose("http://mine:3128", environ)
    assert configured.for_target(True, "api.openai.com", 443) == parse_proxy("http://mine:3128")
    assert configured.for_target(False, "10.0.0.5", 8000) == parse_proxy("http://mine:3128")
    direct = ProxyRules.choose("direct", {"HTTPS_PROXY": "http://env:1"})
    assert direct.for_target(True, "api.openai.com", 443) is None


# --- checked when the configuration is loaded ------------------------------------------


def load(**settings: Any) -> None:
    parse_config({"providers": {"up": {"base_url": "https://llm.internal:8443/v1", **settings}}})


def problems(**settings: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**settings)
    return caught.value.problems


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pki")
    client = ca.issue_cert("client.crossroads.test")
    other = ca.issue_cert("other.crossroads.test")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "cert", "key", "other_key")}
    ca.cert_pem.write_to_path(paths["ca"])
    client.cert_chain_pems[0].write_to_path(paths["cert"])
    client.private_key_pem.write_to_path(paths["key"])
    other.private_key_pem.write_to_path(paths["other_key"])
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret-pass"),
    )
    paths["encrypted_key"] = str(folder / "encrypted.pem")
    Path(paths["encrypted_key"]).write_bytes(encrypted)
    paths["not_pem"] = str(folder / "not.pem")
    Path(paths["not_pem"]).write_text("this is not a certificate\n")
    return paths


def test_good_tls_settings_load(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    load(ca_bundle=files["ca"], client_cert=files["cert"], client_key=files["key"])
    load(ca_bundle=str(Path(files["ca"]).parent))  # a directory of hashed certificates
    monkeypatch.setenv("CLIENT_KEY_PASSWORD", "s3cret-pass")
    load(
        client_cert=files["cert"],
        client_key=files["encrypted_key"],
        client_key_password="env:CLIENT_KEY_PASSWORD",
    )
    load(verify=False)


def test_a_missing_ca_bundle_names_its_setting() -> None:
    assert problems(ca_bundle="/nowhere/ca.pem") == [
        "providers.up.ca_bundle: no such file: /nowhere/ca.pem"
    ]


def test_a_ca_bundle_that_is_not_pem_is_refused(files: dict[str, str]) -> None:
    (problem,) = problems(ca_bundle=files["not_pem"])
    assert problem.startswith("providers.up.ca_bundle: no CA certificate could be read from")


def test_client_key_problems_are_told_apart(files: dict[str, str]) -> None:
    (mismatch,) = problems(client_cert=files["cert"], client_key=files["other_key"])
    assert mismatch.startswith("providers.up.client_key: cannot load the client certificate")
    assert "does not belong to the certificate" in mismatch
    (encrypted,) = problems(client_cert=files["cert"], client_key=files["encrypted_key"])
    assert "the key is encrypted: set client_key_password" in encrypted
    (wrong,) = problems(
        client_cert=files["cert"], client_key=files["encrypted_key"], client_key_password="nope"
    )
    assert wrong.startswith("providers.up.client_key: cannot load")
    (unreadable,) = problems(client_cert=files["cert"], client_key=files["not_pem"])
    assert unreadable.startswith("providers.up.client_key: cannot load")
    assert problems(client_cert="/nowhere/cert.pem") == [
        "providers.up.client_cert: no such file: /nowhere/cert.pem"
    ]
    (alone,) = problems(client_key=files["key"])
    assert (
        alone == "providers.up.client_key: needs client_cert (the certificate the key belongs to)"
    )


def test_an_unusable_proxy_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems(proxy="socks5://127.0.0.1:1080")[0].startswith(
        "providers.up.proxy: socks5:// proxies are not supported"
    )
    monkeypatch.setenv("HTTPS_PROXY", "socks5h://127.0.0.1:1080")
    (problem,) = problems()
    assert problem.startswith("providers.up.proxy: environment variable HTTPS_PROXY: socks5h://")
    assert problem.endswith('(or set proxy = "direct" for this provider)')
    load(proxy="direct")  # this provider ignores the environment's proxy
    monkeypatch.setenv("PROXY_URL", "http://user:pw@127.0.0.1:3128")
    load(proxy="env:PROXY_URL")
