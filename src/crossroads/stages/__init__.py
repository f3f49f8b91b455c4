"""The pipeline's stages, by feature: each kind decides per request whether it runs.

`config_stages` is the list the app starts with; every kind in it costs one `select` call
that returns None on a request that does not use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossroads.cache.config import CacheConfig
from crossroads.config import Config
from crossroads.pipeline.stages import StageKind
from crossroads.stages.cache import CacheKind
from crossroads.stages.guardrails import GuardrailsKind
from crossroads.stages.mixture import MixtureKind
from crossroads.stages.pruning import PruningKind
from crossroads.stages.quality import QualityKind
from crossroads.stages.retrieval import RetrievalKind

if TYPE_CHECKING:
    from crossroads.cache.responses import ResponseCache
    from crossroads.retrieval.library import Library

__all__ = ["config_stages"]


def config_stages(
    config: Config, library: Library | None = None, cache: ResponseCache | None = None
) -> list[StageKind]:
    """The kinds of stage this config can run, in no particular order (the pipeline
    orders them). Retrieval needs the app's collections (`library`), caching its cache."""
    kinds: list[StageKind] = [
        GuardrailsKind(config),
        QualityKind(config.quality, config),
        MixtureKind(config.quality),
    ]
    if library is not None:
        kinds.append(RetrievalKind(library))
    if cache is not None:
        kinds.append(CacheKind(config.cache or CacheConfig(), cache))
    if config.pruning.models:
        kinds.append(PruningKind(config))
    return kinds
