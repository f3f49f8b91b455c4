"""The `llamacpp` dialect's capability matrix (the embedded engine)."""

from __future__ import annotations

from crossroads.protocol.chat import ENGINE_PARAMETERS
from crossroads.providers.capabilities import Capabilities, matrix

__all__ = ["LLAMACPP_CAPABILITIES"]


# What the embedded engine honours: OpenAI's sampling and format parameters and every
# decoding extension. `user`, `metadata` and `store` are the gateway's own business.
_NATIVE = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "store",
    *ENGINE_PARAMETERS,
)
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


LLAMACPP_CAPABILITIES = Capabilities(
    parameters=matrix(native=_NATIVE, unsupported=_UNSUPPORTED),
    unknown="native",  # llama.cpp's own options (repeat_penalty, ignore_eos, …) pass through
    vision=False,
    notes="runs in-process; beam search and guided decoding are real here",
)
