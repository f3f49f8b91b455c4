"""Pruning as a request stage: a fine-tuned model's requests lose what its training rows lost.

The first stage before the call (pipeline/stages.py order). Its rules come from `[pruning]`
(datasets/config.py), by the requested model's name; a model with no rules costs one dict
lookup. The upstream receives the pruned messages; the log keeps the caller's, and the
response reports which rules removed something (`pruning.rules`).
"""

from __future__ import annotations

from typing import Any

from crossroads.config import Config
from crossroads.datasets.pruning import Pruner
from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.stages import Stage

__all__ = ["PruningKind", "PruningStage"]


class PruningKind:
    """Picks the pruner of a request's model (pipeline/stages.py `StageKind`)."""

    name = "pruning"
    before = True
    after = False

    def __init__(self, config: Config) -> None:
        self.by_model = {
            model: Pruner(config.pruning.rules_for(model)) for model in config.pruning.models
        }

    def select(self, chat: PreparedChat) -> Stage | None:
        pruner = self.by_model.get(chat.request.model)
        return PruningStage(pruner) if pruner else None


class PruningStage(Stage):
    name = "pruning"

    def __init__(self, pruner: Pruner) -> None:
        self.pruner = pruner

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        messages = chat.body["messages"]
        pruned = self.pruner.prune_messages(messages)
        applied = [
            rule.name
            for rule, single in zip(self.pruner.rules, _singles(self.pruner), strict=True)
            if any(single.prune_message(m) != m for m in messages)
        ]
        if pruned != messages:
            chat.rewrite_messages(pruned)
        chat.report("pruning", {"rules": applied})
        return None


def _singles(pruner: Pruner) -> list[Pruner]:
    return [Pruner([rule]) for rule in pruner.rules]
