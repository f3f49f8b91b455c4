"""Bearer-key authentication for the API.

Keys come from config. Each presented key is compared against every configured key with
`hmac.compare_digest` over SHA-256 digests, so neither the position of a mismatch nor the
length of a key shows in the timing. With no keys configured there is nothing to check,
and the gateway only serves clients on this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

from crossroads.config import KeyConfig
from crossroads.protocol.errors import GatewayError

__all__ = ["KeyRing", "is_loopback"]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KeyRing:
    """The configured keys, held as digests, answering "who is this caller?"."""

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self._digests = [(k.name, hashlib.sha256(k.key.encode()).digest()) for k in keys]

    @property
    def open(self) -> bool:
        """True when no keys are configured (loopback-only mode)."""
        return not self._digests

    def authenticate(self, authorization: str | None, client_host: str | None) -> str | None:
        """The caller's key name (None in loopback-only mode), or a 401/403 `GatewayError`."""
        if self.open:
            if not is_loopback(client_host):
                raise GatewayError(
                    403,
                    "This gateway has no API keys configured and serves only clients on its own "
                    "machine. Configure [[keys]] to serve other hosts.",
                    code="loopback_only",
                )
            return None
        if not authorization:
            raise GatewayError(
                401,
                "Missing API key: send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GatewayError(
                401,
                "Malformed Authorization header: expected 'Bearer <key>'.",
                code="invalid_api_key",
            )
        presented = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for name, digest in self._digests:
            if hmac.compare_digest(presented, digest):
                found = name
        if found is None:
            hint = token[:3] + "…" + token[-4:] if len(token) > 10 else "…"
            raise GatewayError(401, f"Incorrect API key provided: {hint}.", code="invalid_api_key")
        return found
