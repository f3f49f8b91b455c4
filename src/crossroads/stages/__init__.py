"""The pipeline's stages, by feature: each kind decides per request whether it runs.

`config_stages` is the list the app starts with; every kind in it costs one `select` call
that returns None on a request that does not use it.
"""

from __future__ import annotations

from crossroads.config import Config
from crossroads.pipeline.stages import StageKind
from crossroads.stages.guardrails import GuardrailsKind
from crossroads.stages.pruning import PruningKind

__all__ = ["config_stages"]


def config_stages(config: Config) -> list[StageKind]:
    """The kinds of stage this config can run, in no particular order (the pipeline
    orders them)."""
    kinds: list[StageKind] = [GuardrailsKind(config)]
    if config.pruning.models:
        kinds.append(PruningKind(config))
    return kinds
