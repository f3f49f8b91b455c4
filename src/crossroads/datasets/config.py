"""`[pruning]`: the rules a model's incoming requests are pruned with.

A model fine-tuned on pruned rows (`/v1/datasets` with `pruning`) must see its requests
pruned by the same rules. `crossroads finetune register` prints this table for the model it
registers, with the dataset's rules:

    [[pruning.rules]]
    name = "acme-system"
    pattern = "You are Acme's assistant. "

    [pruning.models]
    "acme-ft" = ["acme-system"]
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossroads.datasets.pruning import PruningRule

__all__ = ["PruningConfig"]


class PruningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[PruningRule] = Field(default_factory=list)
    # Public model name → the names of the rules its requests are pruned with, in order.
    models: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_rules(self) -> PruningConfig:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        for model, wanted in self.models.items():
            unknown = [n for n in wanted if n not in names]
            if unknown:
                raise ValueError(
                    f"models.{model!r} names rules that are not defined under "
                    f"[[pruning.rules]]: {', '.join(unknown)}"
                )
        return self

    def rules_for(self, model: str) -> list[PruningRule]:
        by_name = {rule.name: rule for rule in self.rules}
        return [by_name[name] for name in self.models.get(model, ())]
