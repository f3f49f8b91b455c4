"""What every `[providers.NAME]` table shares, whatever its dialect.

Each dialect declares its own table as a subclass of `ProviderConfig` next to its code, so
the shared configuration module never has to name a dialect: it asks the registry which
model validates a table with a given `dialect = "…"`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["HttpProviderConfig", "ProviderConfig", "SupportLevel"]

SupportLevel = Literal["native", "translated", "unsupported"]


class ProviderConfig(BaseModel):
    """One configured upstream; subclasses add their dialect's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dialect: str


class HttpProviderConfig(ProviderConfig):
    """What every upstream reached over HTTP is configured with."""

    base_url: str | None = None
    api_key: str | None = None
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(600.0, gt=0)
    max_connections: int = Field(1000, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    # Corrections to the capability matrix, e.g. `{ top_k = "native" }` for a server that
    # honours a parameter its preset does not list, or `"unsupported"` to drop one.
    parameters: dict[str, SupportLevel] = Field(default_factory=dict)
    # Transport (providers/proxy.py, providers/tls.py): an http:// proxy URL or "direct";
    # unset, HTTPS_PROXY / HTTP_PROXY / NO_PROXY decide. TLS files are checked at load.
    proxy: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = None
    verify: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return None if value is None else value.rstrip("/")
