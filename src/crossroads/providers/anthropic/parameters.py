"""The `anthropic` dialect's capability matrix (Messages API)."""

from __future__ import annotations

from types import MappingProxyType

from crossroads.providers.capabilities import Capabilities, matrix

__all__ = ["ANTHROPIC_CAPABILITIES", "ANTHROPIC_PASSTHROUGH"]

# Messages API fields a caller may send as they are; everything else unknown is dropped.
ANTHROPIC_PASSTHROUGH = frozenset({"thinking", "top_k"})

ANTHROPIC_CAPABILITIES = Capabilities(
    parameters=matrix(
        native=("temperature", "top_p", "top_k", *ANTHROPIC_PASSTHROUGH),
        translated=(
            "max_tokens",  # → max_tokens (required upstream; a configured default applies)
            "max_completion_tokens",  # → max_tokens
            "stop",  # → stop_sequences
            "tools",  # → tools[].input_schema
            "tool_choice",  # → tool_choice {auto, any, none, tool}
            "parallel_tool_calls",  # false → tool_choice.disable_parallel_tool_use
            "response_format",  # json_schema / json_object → a forced tool, its input the answer
            "guided_json",  # the same forced tool
            "user",  # → metadata.user_id
            "metadata",  # kept in the gateway's request log
            "store",  # honoured by the gateway's request log
            "reasoning_effort",  # → thinking.budget_tokens
            "reasoning",  # → thinking (effort or max_tokens), exclude hides it
        ),
        unsupported=(
            "n",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "functions",
            "function_call",
            "audio",
            "modalities",
            "prediction",
            "web_search_options",
            "service_tier",  # Anthropic's tiers are named differently
            "min_p",
            "use_beam_search",
            "beam_size",
            "best_of",
            "length_penalty",
            "early_stopping",
            "guided_regex",
            "guided_choice",
            "guided_grammar",
        ),
    ),
    unknown="unsupported",
    vision=True,
    max_n=None,
    ranges=MappingProxyType({"temperature": (0.0, 1.0)}),  # OpenAI's goes to 2
    notes="max_tokens defaults to the provider's default_max_tokens (4096); temperature 0–1",
)
