"""How familiar a prompt is: its distance from the training data, as a confidence in [0, 1].

The learned quality models only know the region of feature space they were trained on. A prompt
far from it (open-ended chat for a router trained on exam questions, word problems for one
trained on multiple choice) gets predictions that are extrapolations, and measured out of
distribution they rank prompts worse than prompt length alone (`benchmarks/router/ood.py`).

So the router summarises its training prompts as k-means centroids in the standardised feature
space and measures a new prompt's distance to the nearest one. Each feature's scale has a floor
(`SCALE_FLOOR`): a feature that never varied in training (multiple-choice options in a router
trained on word problems) must make a prompt that has it look far, not infinitely far.

What counts as "near" is calibrated on prompts the centroids did not see: the centroids are
fitted on 80% of the training prompts, and the median distance of the other 20% is the
in-distribution scale. Confidence is 1 up to `NEAR_FACTOR` × that median and falls linearly
to 0 at `FAR_FACTOR` × it. Held-out MMLU subjects have a long tail of distances on
which the learned models still rank prompts better than the priors, so the ramp starts well
past the median: the factors are the ones measured in `benchmarks/router/ood.py` (2 and
4; with 1 and 2 the held-out subjects scored 0.58 APGR instead of 0.635).

Distance alone does not separate open-ended chat from exam questions in this feature space, so
the query type counts too: a type with fewer training prompts than `TYPE_SUPPORT` (or than
`TYPE_SHARE` of a small training set) scales the confidence down in proportion — creative
writing, code and extraction in RouteLLM's data.
The router blends its learned prediction with its priors by the product of the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["Familiarity", "fit_familiarity"]

Floats = npt.NDArray[np.float64]
CENTROIDS: Final = 48
HELD_OUT_SHARE: Final = 0.2
NEAR_FACTOR: Final = 2.0
FAR_FACTOR: Final = 4.0
TYPE_SUPPORT: Final = 200
TYPE_SHARE: Final = 0.1
ITERATIONS: Final = 25
SCALE_FLOOR: Final = 0.05


@dataclass(frozen=True, slots=True)
class Familiarity:
    """Centroids (k × d, in features scaled by `mean`/`scale`) and the calibrated distances."""

    mean: Floats
    scale: Floats
    centroids: Floats
    near: float
    far: float
    type_counts: dict[str, int]

    def distance(self, x: Floats) -> Floats:
        """Distance of each feature row (n × d) to its nearest centroid."""
        standard = (x - self.mean) / self.scale
        squared = (
            (standard**2).sum(axis=1)[:, None]
            - 2 * standard @ self.centroids.T
            + (self.centroids**2).sum(axis=1)[None, :]
        )
        nearest: Floats = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
        return nearest

    def confidence(self, x: Floats, types: Sequence[str]) -> Floats:
        """1 for prompts like the training data, 0 for prompts far from it or of a query type
        it barely held."""
        span = max(self.far - self.near, 1e-9)
        near: Floats = np.clip((self.far - self.distance(x)) / span, 0.0, 1.0)
        enough = max(1.0, min(TYPE_SUPPORT, TYPE_SHARE * sum(self.type_counts.values())))
        support = np.array([min(1.0, self.type_counts.get(t, 0) / enough) for t in types])
        result: Floats = near * support
        return result


def fit_familiarity(x: Floats, types: Sequence[str], *, seed: int = 0) -> Familiarity:
    """Centroids from most of the feature rows `x` (prompts × features), calibrated on the
    rest."""
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), SCALE_FLOOR)
    standard = (x - mean) / scale
    n = len(standard)
    order = rng.permutation(n)
    held = max(1, int(n * HELD_OUT_SHARE)) if n >= 10 else 0
    fit, check = standard[order[held:]], standard[order[:held]]
    centroids = _kmeans(fit, min(CENTROIDS, len(fit)), rng)
    model = Familiarity(np.zeros_like(mean), np.ones_like(scale), centroids, 0.0, 1.0, {})
    median = float(np.median(model.distance(check if held else fit)))
    counts = Counter(types)
    return Familiarity(
        mean, scale, centroids, NEAR_FACTOR * median, max(FAR_FACTOR * median, 1e-6), dict(counts)
    )


def _kmeans(x: Floats, k: int, rng: np.random.Generator) -> Floats:
    """Lloyd's algorithm from a k-means++ start; deterministic for a given generator."""
    centroids = [x[int(rng.integers(len(x)))]]
    closest = ((x - centroids[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = float(closest.sum())
        pick = (
            int(rng.choice(len(x), p=closest / total)) if total > 0 else int(rng.integers(len(x)))
        )
        centroids.append(x[pick])
        closest = np.minimum(closest, ((x - x[pick]) ** 2).sum(axis=1))
    c = np.array(centroids)
    for _ in range(ITERATIONS):
        squared = (x**2).sum(axis=1)[:, None] - 2 * x @ c.T + (c**2).sum(axis=1)[None, :]
        label = squared.argmin(axis=1)
        moved = c.copy()
        for j in range(k):
            members = x[label == j]
            if len(members):
                moved[j] = members.mean(axis=0)
        if np.allclose(moved, c):
            break
        c = moved
    return c
