"""The model catalog: public model names, their deployments, prices and capabilities.

A public name (`gpt-4o-mini`) is what callers send; a `Deployment` is one place that can
serve it (provider + upstream model id + price). Routing chooses among deployments; usage
and cost are computed from the deployment that actually answered. The catalog is built once
from config and is read-only afterwards, so lookups on the request path are dict reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crossroads.config import Config, Price
from crossroads.protocol.errors import GatewayError

__all__ = ["Catalog", "Deployment", "ModelEntry"]


@dataclass(frozen=True, slots=True)
class Deployment:
    model: str  # public name
    provider: str
    upstream_model: str
    price: Price
    weight: float = 1.0
    attempt_timeout: float | None = None

    @property
    def key(self) -> str:
        """`provider/upstream_model`: what live stats and circuit breakers are kept by."""
        return f"{self.provider}/{self.upstream_model}"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    deployments: tuple[Deployment, ...]
    context_window: int | None
    capabilities: tuple[str, ...]
    owned_by: str
    description: str | None = None
    strategy: str | None = None  # None: the gateway's default (`routing.strategy`)

    def listing(self, created: int) -> dict[str, Any]:
        """The model as `GET /v1/models` shows it: OpenAI's four fields, then ours."""
        price = self.deployments[0].price
        return {
            "id": self.name,
            "object": "model",
            "created": created,
            "owned_by": self.owned_by,
            "context_window": self.context_window,
            "capabilities": list(self.capabilities),
            "pricing": {
                "unit": "USD per 1M tokens",
                "prompt": price.input,
                "completion": price.output,
                "cached_prompt": price.cached_input_or_input,
            },
            "providers": sorted({d.provider for d in self.deployments}),
            "description": self.description,
        }


class Catalog:
    """Read-only index of the configured models."""

    def __init__(self, entries: dict[str, ModelEntry]) -> None:
        self._entries = entries
        self._created = int(time.time())

    @classmethod
    def from_config(cls, config: Config) -> Catalog:
        entries = {}
        for name, model in config.models.items():
            deployments = tuple(
                Deployment(
                    model=name,
                    provider=d.provider,
                    upstream_model=d.model or name,
                    price=d.price,
                    weight=d.weight,
                    attempt_timeout=d.attempt_timeout,
                )
                for d in model.deployments
            )
            entries[name] = ModelEntry(
                name=name,
                deployments=deployments,
                context_window=model.context_window,
                capabilities=tuple(model.capabilities),
                owned_by=model.owned_by or deployments[0].provider,
                description=model.description,
                strategy=model.strategy,
            )
        return cls(entries)

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def resolve(self, name: str) -> ModelEntry:
        """The entry for `name`, or the 404 OpenAI returns for an unknown model."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self._entries)[:20]) or "none are configured"
            raise GatewayError(
                404,
                f"The model '{name}' does not exist on this gateway. Available models: {known}.",
                param="model",
                code="model_not_found",
            )
        return entry

    def listing(self) -> dict[str, Any]:
        return {"object": "list", "data": [e.listing(self._created) for e in self]}
