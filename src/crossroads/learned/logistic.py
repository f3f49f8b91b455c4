"""L2-regularised logistic regression, fitted by Newton's method in numpy.

The router has a few dozen features and a few thousand rows per model, so Newton's method
converges in a handful of steps and needs nothing beyond numpy — no scikit-learn, and a model
that is just a weight vector, saved as an array. Labels may be soft (any score in [0, 1]):
the loss is the cross-entropy against the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LogisticModel", "fit_logistic", "sigmoid"]

Floats = npt.NDArray[np.float64]


def sigmoid(z: Floats) -> Floats:
    result: Floats = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
    return result


@dataclass(frozen=True, slots=True)
class LogisticModel:
    """Weights over standardised features; `coef[0]` is the intercept."""

    coef: Floats

    def logit(self, x: Floats) -> Floats:
        """Log-odds for standardised rows `x` (n × d) or one row (d,)."""
        result: Floats = x @ self.coef[1:] + self.coef[0]
        return result


def fit_logistic(x: Floats, y: Floats, *, l2: float = 10.0, iterations: int = 50) -> LogisticModel:
    """Minimise Σ cross-entropy(y, σ(w·x + b)) + l2/2·|w|² (the intercept is not penalised).

    `l2 = 10` is scikit-learn's `C = 0.1`; `x` should be standardised so one strength fits all.
    """
    n, d = x.shape
    design = np.hstack([np.ones((n, 1)), x])
    penalty = np.full(d + 1, l2)
    penalty[0] = 0.0
    mean = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    w = np.zeros(d + 1)
    w[0] = np.log(mean / (1 - mean))
    for _ in range(iterations):
        p = sigmoid(design @ w)
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return LogisticModel(w)
