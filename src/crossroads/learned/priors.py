"""What the router falls back on when a prompt is unlike its training data: priors.

Per model, a prior quality from what holds across datasets rather than within one: the model's
base rate for the prompt's query type and a trend in prompt length (longer prompts are harder,
and more so for weaker models — the prompt-length baseline scores about 0.6 APGR on every
dataset measured). It is a logistic regression per model on the query type (one-hot) and the
standardised log length, heavily regularised, so a type barely seen in training stays near the
model's overall rate.

Feedback from the gateway's own traffic (`POST /v1/feedback`, read by the retrainer) moves the
prior of a (model, query type) towards the mean score people gave it, as if the prior were
worth `PSEUDO_COUNT` ratings: 20 ratings of a type pull it halfway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from crossroads.learned.data import LabelledRow
from crossroads.learned.logistic import LogisticModel, fit_logistic, sigmoid
from crossroads.learned.querytype import QUERY_TYPES, classify

__all__ = ["PSEUDO_COUNT", "Priors", "feedback_table", "fit_priors", "prior_inputs"]

Floats = npt.NDArray[np.float64]
PSEUDO_COUNT: Final = 20.0
PRIOR_L2: Final = 500.0  # measured: 50 ranked chat worse than length (ood.py)
LENGTH_FEATURE: Final = 0  # `log_chars`, first of FEATURE_NAMES


def prior_inputs(standard: Floats, types: Sequence[str]) -> Floats:
    """The prior's inputs per prompt: the query type one-hot and the standardised log length."""
    onehot = np.array([[float(t == k) for k in QUERY_TYPES] for t in types], dtype=np.float64)
    onehot = onehot.reshape(len(types), len(QUERY_TYPES))
    return np.hstack([onehot, standard[:, LENGTH_FEATURE : LENGTH_FEATURE + 1]])


@dataclass(frozen=True, slots=True)
class Priors:
    """One logistic model per router model, plus feedback counts per (model, query type)."""

    models: list[LogisticModel]
    feedback: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def quality(self, names: Sequence[str], inputs: Floats, types: Sequence[str]) -> Floats:
        """Prompts × models prior quality, feedback included."""
        columns = []
        for name, model in zip(names, self.models, strict=True):
            prior = sigmoid(model.logit(inputs))
            rated = self.feedback.get(name, {})
            for row, query_type in enumerate(types):
                if query_type in rated:
                    count, mean = rated[query_type]
                    prior[row] = (PSEUDO_COUNT * prior[row] + count * mean) / (PSEUDO_COUNT + count)
            columns.append(prior)
        return np.stack(columns, axis=1)


def fit_priors(inputs: Floats, scores: Sequence[tuple[npt.NDArray[np.intp], Floats]]) -> Priors:
    """One prior per model from (rows of `inputs`, scores) pairs."""
    return Priors([fit_logistic(inputs[at], y, l2=PRIOR_L2) for at, y in scores])


def feedback_table(
    rows: Iterable[LabelledRow], *, profile: Mapping[str, str] | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """(count, mean score) per model and query type of rated rows (`profile` renames models)."""
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        model = (profile or {}).get(row.model, row.model)
        totals[(model, classify(row.prompt))].append(row.score)
    table: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for (model, query_type), scores in sorted(totals.items()):
        table[model][query_type] = (float(len(scores)), float(np.mean(scores)))
    return dict(table)
