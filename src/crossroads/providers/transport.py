"""How a provider's connections leave the gateway: its proxy and its TLS, from its config.

The HTTP client (`http_client`) stays the one fast path for every provider; what differs
per provider is only which proxy its upstream is reached through (`proxy`) and the TLS it
verifies and identifies itself with (`tls`). Both are worked out from the config once:
`transport_problems` at load time, so a bad proxy URL or an unreadable key stops start-up
with its dotted path, and `client_options` when the provider starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from crossroads.providers.proxy import ProxyRules
from crossroads.providers.tls import TlsSettings, upstream_tls

if TYPE_CHECKING:
    import ssl

__all__ = ["TransportSettings", "client_options", "transport_problems"]


class TransportSettings(TlsSettings, Protocol):
    """The transport settings every HTTP provider config carries."""

    @property
    def proxy(self) -> str | None: ...


def transport_problems(settings: TransportSettings, environ: Mapping[str, str]) -> list[str]:
    """`setting: what is wrong` for each transport setting (or variable) that cannot be used."""
    problems = []
    try:
        ProxyRules.choose(settings.proxy, environ)
    except ValueError as exc:
        if settings.proxy is not None:
            problems.append(str(exc))
        else:
            problems.append(f'proxy: {exc} (or set proxy = "direct" for this provider)')
    try:
        upstream_tls(settings)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def client_options(
    name: str, settings: TransportSettings, environ: Mapping[str, str]
) -> tuple[ssl.SSLContext | None, ProxyRules]:
    """The TLS context and proxy rules for provider `name`'s HTTP client."""
    if not settings.verify:
        import logging  # here: reading a config (`crossroads config check`) never logs

        logging.getLogger("crossroads.providers").warning(
            "provider %r: TLS verification is OFF (verify = false): its upstream's identity "
            "is not checked and anyone on the path can read and change its traffic",
            name,
        )
    return upstream_tls(settings), ProxyRules.choose(settings.proxy, environ)
