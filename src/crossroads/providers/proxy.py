"""Which HTTP proxy, if any, an upstream is reached through.

A provider's own `proxy` setting wins: a proxy URL, or `"direct"` for none. Without it the
environment decides, as curl and Python's urllib read it: `https_proxy`/`HTTPS_PROXY` for
`https://` upstreams, `http_proxy`/`HTTP_PROXY` for `http://` ones (the lower-case name
wins when both are set), and `no_proxy`/`NO_PROXY` lists the hosts reached directly. The
decision is made once per upstream URL, so a request pays nothing for it.

Only `http://` proxies are spoken to (an `https://` upstream still gets its own TLS end to
end, through a CONNECT tunnel); any other scheme is a configuration error at start-up,
naming the variable or setting it came from.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["DIRECT", "Proxy", "ProxyRules", "bypasses_proxy", "parse_proxy"]

DIRECT = "direct"
_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it listens and the `Proxy-Authorization` its URL carries."""

    host: str
    port: int
    authorization: str | None = None
    # The URL without its password, for messages and logs.
    shown: str = ""


def parse_proxy(url: str) -> Proxy:
    """A proxy from `http://[user:password@]host[:port]` (`host:port` alone means http).

    Raises `ValueError` saying what is wrong.
    """
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a proxy URL: {exc}") from None
    if parts.scheme != "http":
        raise ValueError(
            f"{parts.scheme}:// proxies are not supported; use an http:// proxy (an https:// "
            "upstream keeps its own TLS end to end through the proxy's CONNECT tunnel)"
        )
    if not parts.hostname:
        raise ValueError("a proxy URL needs a host, e.g. http://proxy.internal:3128")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown = f"http://{host}:{port or 80}"
    return Proxy(parts.hostname, port or 80, authorization, shown)


def bypasses_proxy(no_proxy: str, host: str, port: int) -> bool:
    """Whether `NO_PROXY` (comma- or space-separated) sends `host:port` direct.

    An entry is `*` (every host), a host name that also covers its subdomains
    (`example.com`, `.example.com` and `*.example.com` all match `api.example.com`), an IP
    address, or a network in CIDR form (`10.0.0.0/8`); any of them may end in `:port`.
    """
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in _SEPARATORS.split(no_proxy.lower()):
        if not entry:
            continue
        if entry == "*":
            return True
        name, wanted_port = _split_port(entry)
        if wanted_port is not None and wanted_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
                continue
            except ValueError:
                pass  # a host name: compared as one below
        name = name.removeprefix("*").lstrip(".")
        if name and (host == name or host.endswith(f".{name}")):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, or a bare host, IP or network (IPv6 has colons of its own)."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port.isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


@dataclass(frozen=True, slots=True)
class ProxyRules:
    """The proxy for each kind of upstream URL, and the hosts that skip it."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: str = ""

    def for_target(self, tls: bool, host: str, port: int) -> Proxy | None:
        proxy = self.https if tls else self.http
        if proxy is None or (self.no_proxy and bypasses_proxy(self.no_proxy, host, port)):
            return None
        return proxy

    @classmethod
    def choose(cls, configured: str | None, environ: Mapping[str, str]) -> ProxyRules:
        """A provider's `proxy` setting, else the environment's variables.

        Raises `ValueError` naming the setting or variable whose URL cannot be used.
        """
        if configured is not None:
            if configured.strip().lower() == DIRECT:
                return cls()
            try:
                proxy = parse_proxy(configured)
            except ValueError as exc:
                raise ValueError(f"proxy: {exc}") from None
            return cls(proxy, proxy)
        found: dict[str, Proxy | None] = {}
        for scheme in ("http", "https"):
            found[scheme] = None
            for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
                if value := environ.get(name, "").strip():
                    try:
                        found[scheme] = parse_proxy(value)
                    except ValueError as exc:
                        raise ValueError(f"environment variable {name}: {exc}") from None
                    break
        no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
        return cls(found["http"], found["https"], no_proxy)
