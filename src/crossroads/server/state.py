"""Everything the routes share, created in the lifespan and hung on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossroads.catalog import Catalog
from crossroads.config import Config
from crossroads.pipeline import Gateway
from crossroads.providers.base import Provider
from crossroads.retrieval.library import Library
from crossroads.routing.shared import SharedRouting
from crossroads.server.auth import KeyRing
from crossroads.server.key_cache import KeyCache
from crossroads.server.metrics import GatewayMetrics
from crossroads.storage.key_store import KeyStore
from crossroads.storage.log_store import LogStore
from crossroads.storage.writer import LogWriter

__all__ = ["AppState"]


@dataclass(slots=True)
class AppState:
    config: Config
    catalog: Catalog
    keys: KeyRing
    providers: dict[str, Provider]
    log_store: LogStore
    log_writer: LogWriter
    gateway: Gateway
    metrics: GatewayMetrics
    openapi_document: dict[str, Any]
    key_store: KeyStore
    key_cache: KeyCache
    # Breakers and stats exchanged with other replicas (a shared state_url), else None.
    shared: SharedRouting | None = None
    # Retrieval collections and local embeddings (server/collections.py, embeddings.py).
    library: Library | None = None
    # "starting", "serving" or "shutting down": the lifespan's phase.
    phase: str = "starting"
    _readers: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self._readers = frozenset(k.name for k in self.config.keys if k.logs == "all")

    def not_ready(self) -> list[str]:
        """Why the gateway cannot serve everything it is configured for; empty when ready."""
        if self.phase != "serving":
            return [self.phase]
        return [
            f"provider '{name}': {provider.not_ready_reason}"
            for name, provider in self.providers.items()
            if not provider.ready
        ]

    def may_read_all_logs(self, key_id: str | None) -> bool:
        """Loopback-only mode has one user; otherwise only keys with `logs = "all"`."""
        return key_id is None or key_id in self._readers
