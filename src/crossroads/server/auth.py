"""Bearer-key authentication: config keys, virtual keys, and the admin API's master key.

A request's key is first compared with every configured key, using `hmac.compare_digest`
over SHA-256 digests so neither the position of a mismatch nor the length of a key shows
in the timing. A key that is none of them and looks like a virtual key (`sk-cr-…`) is
looked up by its digest through the replica's `KeyCache`, and must be neither revoked nor
expired. The caller becomes a `Caller`, whose `key_id` is what the request log records: a
config key's name, or a virtual key's id.

The master key (`CROSSROADS_MASTER_KEY`) opens the admin API and nothing else. With neither
config keys nor a master key there is nobody to authenticate: the gateway serves clients
on its own machine only (loopback-only mode) and ignores whatever key they send. A master
key alone ends that mode, since virtual keys made with it are then the way in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import exc as sa_exc

from crossroads.access import check_model_allowed
from crossroads.config import KeyConfig
from crossroads.environ import MASTER_KEY_ENV
from crossroads.protocol.errors import GatewayError
from crossroads.server.key_cache import KeyCache
from crossroads.storage.key_store import SECRET_PREFIX, VirtualKey

__all__ = [
    "MASTER_KEY_ENV",
    "Caller",
    "KeyRing",
    "check_model_allowed",
    "is_loopback",
    "loopback_only",
    "master_key_from_env",
]

_log = logging.getLogger("crossroads.auth")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def master_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The admin API's master key, or None when `CROSSROADS_MASTER_KEY` is unset or empty."""
    value = (os.environ if environ is None else environ).get(MASTER_KEY_ENV, "").strip()
    return value or None


def loopback_only(keys: Sequence[KeyConfig], master_key: str | None) -> bool:
    """True when nothing can authenticate a caller, so only this machine may connect."""
    return not keys and master_key is None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request. `key_id` is None only in loopback-only mode."""

    key_id: str | None  # a config key's name, or a virtual key's id
    name: str | None
    virtual_key: VirtualKey | None = None  # its limits, budget and models, for enforcement


_ANONYMOUS = Caller(key_id=None, name=None)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _bearer(authorization: str | None) -> str:
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
    return token


def _hint(token: str) -> str:
    return token[:3] + "…" + token[-4:] if len(token) > 10 else "…"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class KeyRing:
    """Answers "who is this caller?" for the API, and "is this the admin?" for /admin.

    `virtual_keys` is where virtual keys are looked up; without it only config keys count.
    """

    def __init__(
        self,
        keys: Sequence[KeyConfig],
        *,
        master_key: str | None = None,
        virtual_keys: KeyCache | None = None,
    ) -> None:
        self._callers = [(_digest(k.key), Caller(key_id=k.name, name=k.name)) for k in keys]
        self._master = None if master_key is None else _digest(master_key)
        self._virtual_keys = virtual_keys
        self._open = loopback_only(keys, master_key)

    @property
    def open(self) -> bool:
        """True in loopback-only mode: neither config keys nor a master key."""
        return self._open

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Caller:
        """The caller, or a `GatewayError`: 401 for a missing, wrong, revoked or expired key,
        403 for another host in loopback-only mode, 503 when virtual keys cannot be read."""
        if self._open:
            if not is_loopback(client_host):
                raise GatewayError(
                    403,
                    "This gateway has no API keys configured and serves only clients on its own "
                    "machine. Configure [[keys]] to serve other hosts.",
                    code="loopback_only",
                )
            return _ANONYMOUS
        token = _bearer(authorization)
        presented = _digest(token)
        found: Caller | None = None
        for digest, caller in self._callers:
            if hmac.compare_digest(presented, digest):
                found = caller
        if found is not None:
            return found
        if self._virtual_keys is not None and token.startswith(SECRET_PREFIX):
            virtual = await self._lookup(presented.hex())
            if virtual is not None:
                return self._admit(virtual)
        if self._master is not None and hmac.compare_digest(presented, self._master):
            raise GatewayError(
                401,
                "The master key opens only the admin API (/admin/…). Call the API with a "
                "virtual key made with POST /admin/keys, or a configured key.",
                code="invalid_api_key",
            )
        raise GatewayError(
            401, f"Incorrect API key provided: {_hint(token)}.", code="invalid_api_key"
        )

    def authenticate_admin(self, authorization: str | None) -> None:
        """Return if `authorization` carries the master key; else a 401 or, with none set, 403."""
        if self._master is None:
            raise GatewayError(
                403,
                f"The admin API is disabled: set the environment variable {MASTER_KEY_ENV} to "
                "a secret where the gateway runs and restart it, then send that secret as "
                "'Authorization: Bearer <master key>'.",
                code="admin_disabled",
            )
        token = _bearer(authorization)
        if not hmac.compare_digest(_digest(token), self._master):
            raise GatewayError(
                401, f"Incorrect master key provided: {_hint(token)}.", code="invalid_api_key"
            )

    async def _lookup(self, key_hash: str) -> VirtualKey | None:
        assert self._virtual_keys is not None
        try:
            return await self._virtual_keys.lookup(key_hash)
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            _log.error("virtual key lookup failed: %s", exc)
            raise GatewayError(
                503,
                "The gateway cannot check this API key now: its key store is unavailable. "
                "Retry shortly.",
                code="key_store_unavailable",
            ) from None

    @staticmethod
    def _admit(virtual: VirtualKey) -> Caller:
        status = virtual.status()
        if status == "revoked":
            assert virtual.revoked_at is not None
            raise GatewayError(
                401,
                f"This API key ({virtual.key_prefix}) was revoked at {_utc(virtual.revoked_at)}.",
                code="key_revoked",
            )
        if status == "expired":
            assert virtual.expires_at is not None
            raise GatewayError(
                401,
                f"This API key ({virtual.key_prefix}) expired at {_utc(virtual.expires_at)}.",
                code="key_expired",
            )
        return Caller(key_id=virtual.id, name=virtual.name or virtual.id, virtual_key=virtual)
