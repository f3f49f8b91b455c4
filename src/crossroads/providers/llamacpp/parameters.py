"""The `llamacpp` dialect's capability matrix (the embedded engine)."""

from __future__ import annotations

from crossroads.protocol.extensions import ENGINE_PARAMETERS
from crossroads.providers.capabilities import OPENAI_PARAMETERS, Capabilities, matrix

__all__ = ["LLAMACPP_CAPABILITIES"]


# What the embedded engine honours: OpenAI's sampling and format parameters and every
# decoding extension. `user`, `metadata` and `store` are the gateway's own business.
_UNSUPPORTED = (
    "reasoning_effort",
    "reasoning",
    "functions",
    "function_call",
    "service_tier",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
)
_NATIVE = (*(p for p in OPENAI_PARAMETERS if p not in _UNSUPPORTED), *ENGINE_PARAMETERS)


LLAMACPP_CAPABILITIES = Capabilities(
    parameters=matrix(native=_NATIVE, unsupported=_UNSUPPORTED),
    unknown="native",  # llama.cpp's own options (repeat_penalty, ignore_eos, …) pass through
    vision=False,
    notes="runs in-process; beam search and guided decoding are real here",
)
