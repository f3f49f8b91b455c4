"""Registered fine-tuned models, served without editing the config.

`crossroads finetune status --register NAME` records a finished job's model under NAME. At
start-up the gateway adds each registered model as a model of its own: one deployment on
the provider it was trained at (so the same dialect, base_url and key), the upstream model
id being the fine-tuned one, priced like the base model's deployment on that provider, and
its requests pruned with the training dataset's rules. The config always wins: a model the
config already names is left as configured, and a registration whose provider is no longer
configured is skipped (with a warning). A later registration of the same name wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from crossroads.config import Config, DeploymentConfig, ModelConfig, Price
from crossroads.datasets.config import PruningConfig
from crossroads.datasets.pruning import PruningRule
from crossroads.storage.fine_tune_store import FineTuneJob, FineTuneStore

__all__ = ["serve_registered", "with_registered_models"]

logger = logging.getLogger(__name__)


def _base(config: Config, job: FineTuneJob) -> tuple[Price, ModelConfig | None]:
    """The base model's price and config: its deployment on the job's provider, if any."""
    for name, model in config.models.items():
        for deployment in model.deployments:
            if deployment.provider == job.provider and (deployment.model or name) == (
                job.base_model
            ):
                return deployment.price, model
    return Price(), None


def serve_registered(config: Config, jobs: Iterable[FineTuneJob]) -> Config:
    """`config` with a model for every registered job it does not name already."""
    models = dict(config.models)
    rules = list(config.pruning.rules)
    pruned = dict(config.pruning.models)
    added: dict[str, FineTuneJob] = {}
    for job in jobs:
        name, upstream = job.registered_as, job.fine_tuned_model
        if not name or not upstream or (name in config.models and name not in added):
            continue
        if job.provider not in config.providers:
            logger.warning(
                "fine-tuned model %r (job %s) is not served: its provider %r is not in the "
                "config any more",
                name,
                job.id,
                job.provider,
            )
            continue
        price, base = _base(config, job)
        models[name] = ModelConfig(
            deployments=[DeploymentConfig(provider=job.provider, model=upstream, price=price)],
            context_window=base.context_window if base else None,
            capabilities=list(base.capabilities) if base else [],
            description=f"fine-tuned from {job.base_model} (job {job.id})",
        )
        added[name] = job
    for name, job in added.items():
        if name in config.pruning.models or not job.pruning:
            continue
        # Rule names are the dataset's, prefixed so two models' rules never collide.
        own = [PruningRule(**{**rule, "name": f"{name}/{rule['name']}"}) for rule in job.pruning]
        rules += own
        pruned[name] = [rule.name for rule in own]
    if not added:
        return config
    pruning = PruningConfig(rules=rules, models=pruned)
    return config.model_copy(update={"models": models, "pruning": pruning})


async def with_registered_models(config: Config, store: FineTuneStore) -> Config:
    """`serve_registered` over the database's registrations (the lifespan calls this)."""
    return serve_registered(config, await store.registered())
