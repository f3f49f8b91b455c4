"""The learned quality/cost router behind `model: "router"` (offline core).

`train(rows)` learns, per candidate model, how well it answers a prompt; `QualityRouter.predict`
gives each candidate's predicted quality and completion tokens and the prompt's query type;
`RouterPrediction.choose` applies the routing rule (quality × willingness_to_pay / 0.10 − cost).
"""

from __future__ import annotations

from crossroads.learned.data import LabelledRow, RouterDataError, read_rows
from crossroads.learned.decision import REFERENCE_PRICES, ModelPrice
from crossroads.learned.predictor import (
    QualityRouter,
    RouterArtifactError,
    RouterPrediction,
    TrainSettings,
    train,
)
from crossroads.learned.querytype import QUERY_TYPES, classify

__all__ = [
    "QUERY_TYPES",
    "REFERENCE_PRICES",
    "LabelledRow",
    "ModelPrice",
    "QualityRouter",
    "RouterArtifactError",
    "RouterDataError",
    "RouterPrediction",
    "TrainSettings",
    "classify",
    "read_rows",
    "train",
]
