"""The routing rule: the candidate with the most predicted quality for its predicted cost.

`willingness_to_pay` (USD) is what a 10% quality gain is worth to the caller, so a candidate's
utility is predicted quality × (willingness_to_pay / 0.10) − predicted cost, and the highest
utility wins. 0 means "cheapest, always"; infinity means "best, whatever it costs". Cost is
prompt tokens × input price + predicted completion tokens × output price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["REFERENCE_PRICES", "ModelPrice", "choose_models", "utility"]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million tokens, as providers list them."""

    input: float
    output: float

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


# Public list prices of the two models in the RouteLLM evaluation data (USD per 1M tokens):
# GPT-4-1106-preview at OpenAI's list price; Mixtral-8x7B-Instruct at the common hosted price
# (Together AI and Fireworks both list $0.60 for input and output).
REFERENCE_PRICES: Final = {
    "gpt-4-1106-preview": ModelPrice(input=10.0, output=30.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ModelPrice(input=0.60, output=0.60),
}


def utility(quality: float, cost: float, willingness_to_pay: float) -> float:
    """What choosing a candidate is worth: quality in dollars minus its cost."""
    return quality * (willingness_to_pay / 0.10) - cost


def choose_models(
    quality: Floats, predicted_cost: Floats, willingness_to_pay: float
) -> npt.NDArray[np.intp]:
    """Each row's chosen candidate (column index) for prompts × candidates arrays.

    At 0 the cheapest wins (ties to the better one); at infinity the best (ties to the
    cheaper one); in between the highest `utility`.
    """
    if willingness_to_pay < 0 or math.isnan(willingness_to_pay):
        raise ValueError("willingness_to_pay must be a non-negative number of USD")
    if willingness_to_pay == 0:
        return np.lexsort((-quality, predicted_cost), axis=1)[:, 0]
    if math.isinf(willingness_to_pay):
        return np.lexsort((predicted_cost, -quality), axis=1)[:, 0]
    best: npt.NDArray[np.intp] = np.argmax(
        quality * (willingness_to_pay / 0.10) - predicted_cost, axis=1
    )
    return best
