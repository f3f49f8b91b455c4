"""The `[cache]` table: what is cached, where, for how long; per model and per key.

    [cache]
    mode = "exact"            # off | exact | semantic (semantic also looks up exactly)
    ttl = 3600                # seconds
    backend = "memory"        # memory | sqlite (the gateway's database) | redis
    [cache.models.gpt-4o-mini]
    mode = "semantic"
    [cache.keys.batch-jobs]
    mode = "off"

Settings resolve request → key → model → global, each overriding only what it sets. Keys
never share entries (the namespace is the key's) unless `share_across_keys` is set.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CacheConfig", "CacheMode", "CacheSettings"]

CacheMode = Literal["off", "exact", "semantic"]


class CacheSettings(BaseModel):
    """One layer of cache settings; None: inherit from the layer below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: CacheMode | None = None
    ttl: Annotated[float, Field(gt=0)] | None = None
    # Cosine similarity (local embedder) a question must reach to be answered semantically.
    threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    # Cache answers sampled with temperature > 0 too (a fixed answer for a random request).
    sampled: bool | None = None
    share_across_keys: bool | None = None


class CacheConfig(CacheSettings):
    backend: Literal["memory", "sqlite", "redis"] = "memory"
    # Redis URL for backend "redis" (default: storage.state_url).
    url: str | None = None
    # Entries the memory backend keeps (least recently used go first).
    max_entries: Annotated[int, Field(ge=1)] = 10_000
    models: dict[str, CacheSettings] = Field(default_factory=dict)
    keys: dict[str, CacheSettings] = Field(default_factory=dict)
