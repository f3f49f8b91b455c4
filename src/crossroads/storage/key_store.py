"""Virtual keys: bearer keys made at run time, and the one owner of their SQL.

A virtual key's secret (`sk-cr-` and 32 random URL-safe characters) exists in clear only
in the answer to `create`; the database keeps its SHA-256 digest, which is also how a
presented key is found (`find_by_secret`), and a short prefix to tell keys apart in a
listing. The secret has 192 random bits, so an unsalted fast hash is enough: there is no
dictionary to guess from. Records are immutable values, so a cache can hand the same one
to many requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crossroads.storage.migrate import upgrade
from crossroads.storage.schema import virtual_keys
from crossroads.storage.storable import not_stored, readable_json, storable_text

__all__ = [
    "BUDGET_PERIODS",
    "SECRET_PREFIX",
    "SETTINGS",
    "BudgetPeriod",
    "KeyStatus",
    "KeyStore",
    "VirtualKey",
    "hash_secret",
]

SECRET_PREFIX = "sk-cr-"
BudgetPeriod = Literal["daily", "weekly", "monthly"]
BUDGET_PERIODS: tuple[BudgetPeriod, ...] = ("daily", "weekly", "monthly")
KeyStatus = Literal["active", "revoked", "expired"]

# What a caller of `create` and `update` may set; everything else the store decides.
SETTINGS: tuple[str, ...] = (
    "name",
    "team",
    "models",
    "max_budget",
    "budget_period",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "expires_at",
    "metadata",
    "guardrails",
)
_PREFIX_CHARS = len(SECRET_PREFIX) + 4


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualKey:
    id: str  # "key_" + 24 hex characters; what the request log records as key_id
    name: str | None = None
    team: str | None = None
    models: tuple[str, ...] | None = None  # public model names it may use; None: all
    max_budget: float | None = None  # USD, per `budget_period` (None: in total)
    budget_period: BudgetPeriod | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    expires_at: datetime | None = None  # UTC
    metadata: dict[str, Any] = field(default_factory=dict)
    key_hash: str  # SHA-256 hex digest of the secret
    key_prefix: str  # the secret's first characters and "…", for display
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None = None
    # Checks every request made with this key runs (a guardrail set, as stored); None: none.
    guardrails: dict[str, Any] | None = None

    @property
    def has_limits(self) -> bool:
        """Whether any rate, concurrency or budget limit applies to this key."""
        return any(
            limit is not None
            for limit in (
                self.rpm_limit,
                self.tpm_limit,
                self.max_parallel_requests,
                self.max_budget,
            )
        )

    def status(self, now: datetime | None = None) -> KeyStatus:
        """ "revoked" once revoked, else "expired" from `expires_at` on, else "active"."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"


def hash_secret(secret: str) -> str:
    """The digest a secret is stored and looked up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(VirtualKey))
_COLUMNS: tuple[sa.Column[Any], ...] = tuple(virtual_keys.c[name] for name in _FIELDS)


# JSON columns are read as their stored text and decoded here (`readable_json`), so no
# stored value, however odd, can fail a listing, or a caller presenting the key.
_SELECTED = tuple(
    sa.cast(column, sa.Text()).label(column.name) if isinstance(column.type, sa.JSON) else column
    for column in _COLUMNS
)


def _models(value: Any) -> tuple[str, ...] | None:
    """The stored model list; one that cannot be read allows no model (never every one)."""
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(model, str) for model in value):
        return tuple(value)
    return ()


def _to_record(row: Mapping[Any, Any], *, stored: bool = True) -> VirtualKey:
    """A key from a row read back (JSON columns as text), or from the values just written."""
    values = {name: row[name] for name in _FIELDS}
    models, metadata, guardrails = values["models"], values["metadata"], values["guardrails"]
    if stored:
        models, metadata = _models(readable_json(models)), readable_json(metadata)
        guardrails = readable_json(guardrails)
    elif models is not None:
        models = tuple(models)
    if metadata and not isinstance(metadata, dict):
        metadata = not_stored("the stored value is not an object")
    if guardrails is not None and not isinstance(guardrails, dict):
        guardrails = None  # unreadable: the key has no guardrail set of its own
    changes = {"models": models, "metadata": metadata or {}, "guardrails": guardrails}
    return VirtualKey(**(values | changes))


def _to_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    if unknown := set(settings) - set(SETTINGS):
        raise ValueError(f"not a virtual key setting: {', '.join(sorted(unknown))}")
    values = dict(settings)
    if values.get("models") is not None:
        values["models"] = list(values["models"])
    if "metadata" in values:
        values["metadata"] = values["metadata"] or {}
    return values


class KeyStore:
    """Virtual keys in one database. Shares `engine` with its owner and never disposes of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def open(self) -> None:
        """Bring the schema up to date (the same migrations `LogStore.open` runs)."""
        await upgrade(self._engine)

    async def create(self, **settings: Any) -> tuple[VirtualKey, str]:
        """A new active key with `settings` (names from `SETTINGS`), and its secret.

        The secret is returned this once and stored only as its digest.
        """
        values = _to_values(settings)
        secret = SECRET_PREFIX + secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        row = dict.fromkeys(SETTINGS) | {"metadata": {}} | values
        row |= {
            "id": "key_" + secrets.token_hex(12),
            "key_hash": hash_secret(secret),
            "key_prefix": secret[:_PREFIX_CHARS] + "…",
            "created_at": now,
            "updated_at": now,
            "revoked_at": None,
        }
        async with self._engine.begin() as connection:
            await connection.execute(virtual_keys.insert(), row)
        return _to_record(row, stored=False), secret

    async def get(self, id: str) -> VirtualKey | None:
        return await self._one(virtual_keys.c.id == storable_text(id))

    async def find_by_secret(self, secret: str) -> VirtualKey | None:
        """The key whose secret this is, whatever its status; None for no key at all."""
        return await self.find_by_hash(hash_secret(secret))

    async def find_by_hash(self, key_hash: str) -> VirtualKey | None:
        return await self._one(virtual_keys.c.key_hash == key_hash)

    async def list(
        self, *, team: str | None = None, include_revoked: bool = False
    ) -> Sequence[VirtualKey]:
        """Keys oldest first; revoked ones only with `include_revoked`, expired ones always."""
        c = virtual_keys.c
        conditions: list[sa.ColumnElement[bool]] = []
        if team is not None:
            conditions.append(c.team == storable_text(team))
        if not include_revoked:
            conditions.append(c.revoked_at.is_(None))
        statement = sa.select(*_SELECTED).where(*conditions).order_by(c.created_at, c.id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [_to_record(row) for row in rows]

    async def update(self, id: str, settings: Mapping[str, Any]) -> VirtualKey | None:
        """Change only the settings given (None clears one); None for an unknown id.

        Revoked keys can still be updated (their metadata, say); it does not revive them.
        """
        values = _to_values(settings)
        id = storable_text(id)  # a NUL or lone surrogate: no such key, not a store failure
        async with self._engine.begin() as connection:
            if values:
                values["updated_at"] = datetime.now(UTC)
                statement = virtual_keys.update().where(virtual_keys.c.id == id).values(values)
                await connection.execute(statement)
            return await self._one(virtual_keys.c.id == id, connection)

    async def revoke(self, id: str) -> VirtualKey | None:
        """Revoke the key for good; revoking again keeps the first `revoked_at`."""
        c = virtual_keys.c
        id = storable_text(id)
        now = datetime.now(UTC)
        async with self._engine.begin() as connection:
            await connection.execute(
                virtual_keys.update()
                .where(c.id == id, c.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
            )
            return await self._one(c.id == id, connection)

    async def _one(
        self, condition: sa.ColumnElement[bool], connection: AsyncConnection | None = None
    ) -> VirtualKey | None:
        statement = sa.select(*_SELECTED).where(condition)
        if connection is None:
            async with self._engine.connect() as own:
                row = (await own.execute(statement)).mappings().first()
        else:
            row = (await connection.execute(statement)).mappings().first()
        return None if row is None else _to_record(row)
