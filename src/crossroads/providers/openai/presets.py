"""Named OpenAI-compatible providers: a base URL, a key variable and a capability matrix.

DeepSeek, Groq, vLLM, Ollama and the rest speak the `openai` dialect; what differs is where
they live and which parameters they honour. A preset is exactly that, as data: a user
writes `preset = "groq"` and a key reference, and gets the right URL and a matrix that
drops what the upstream would reject. Where an upstream spells a parameter its own way
(Mistral's `random_seed`, vLLM's `structured_outputs`, llama-server's `grammar`), the
preset carries a rewrite. The matrices reflect each provider's documented API; anything a
deployment does differently is corrected per provider in config with `parameters`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crossroads.providers.capabilities import (
    MATRIX_PARAMETERS,
    OPENAI_PARAMETERS,
    Capabilities,
    matrix,
)

__all__ = ["GENERIC_OPENAI", "PRESETS", "Preset", "Rewrite"]

Rewrite = Callable[[dict[str, Any], str], None]
"""Rewrites parameter `name` of an upstream body in place, into the upstream's spelling."""


def _rename(target: str) -> Rewrite:
    def rewrite(body: dict[str, Any], name: str) -> None:
        value = body.pop(name)
        body.setdefault(target, value)

    return rewrite


def _nest(container: str, key: str) -> Rewrite:
    def rewrite(body: dict[str, Any], name: str) -> None:
        value = body.pop(name)
        nested = body.get(container)
        body[container] = {**(nested if isinstance(nested, dict) else {}), key: value}

    return rewrite


def _strip(body: dict[str, Any], name: str) -> None:
    """Honoured by the gateway itself (the request log); the upstream would reject it."""
    body.pop(name)


def _reasoning_to_effort(body: dict[str, Any], name: str) -> None:
    """OpenRouter's `reasoning` object → OpenAI's `reasoning_effort`."""
    reasoning = body.pop(name)
    if not isinstance(reasoning, dict) or "reasoning_effort" in body:
        return
    if effort := reasoning.get("effort"):
        body["reasoning_effort"] = effort
    elif reasoning.get("enabled") or reasoning.get("max_tokens"):
        body["reasoning_effort"] = "medium"


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    title: str
    base_url: str
    key_env: str | None  # the variable a key is conventionally kept in
    capabilities: Capabilities
    rewrites: Mapping[str, Rewrite] = field(default_factory=dict)
    needs_key: bool = True


_OPENAI = OPENAI_PARAMETERS  # honoured natively by OpenAI itself
# The core every OpenAI-compatible server implements.
_CORE = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
)
_OPENAI_ONLY = ("audio", "modalities", "prediction", "web_search_options", "service_tier")
_GUIDED = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
_GATEWAY_ONLY = ("metadata", "store")  # kept in the request log, not sent

_TO_MAX_TOKENS = {"max_completion_tokens": _rename("max_tokens")}
_STRIP_GATEWAY = dict.fromkeys(_GATEWAY_ONLY, _strip)


def _caps(
    *,
    native: tuple[str, ...],
    translated: tuple[str, ...] = (),
    unsupported: tuple[str, ...] = (),
    unknown: str = "native",
    notes: str = "",
) -> Capabilities:
    listed = set(native) | set(translated)
    rest = tuple(p for p in MATRIX_PARAMETERS if p not in listed)
    return Capabilities(
        parameters=matrix(native=native, translated=translated, unsupported=(*unsupported, *rest)),
        unknown="unsupported" if unknown == "unsupported" else "native",
        vision=True,
        notes=notes,
    )


# An OpenAI-compatible server we know nothing about: OpenAI's parameters go through, the
# caller's own extras go through (such servers often accept more), Crossroads' decoding
# extensions are dropped unless config declares them.
GENERIC_OPENAI = _caps(native=_OPENAI, notes="unknown server: extras passed through")

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "openai",
            "OpenAI",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            _caps(
                native=_OPENAI,
                translated=("reasoning",),
                unknown="unsupported",
                notes="rejects unknown parameters, so extras are dropped",
            ),
            {"reasoning": _reasoning_to_effort},
        ),
        Preset(
            "openrouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            _caps(
                native=(
                    *_CORE,
                    "max_completion_tokens",
                    "n",
                    "logit_bias",
                    "logprobs",
                    "top_logprobs",
                    "parallel_tool_calls",
                    "user",
                    "metadata",
                    "store",
                    "reasoning_effort",
                    "reasoning",
                    "top_k",
                    "min_p",
                ),
                notes="provider-specific extras (top_a, repetition_penalty) pass through",
            ),
        ),
        Preset(
            "together",
            "Together AI",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
            _caps(
                native=(*_CORE, "n", "logit_bias", "user", "top_k", "min_p", "reasoning_effort"),
                translated=("max_completion_tokens", *_GATEWAY_ONLY),
                notes="logprobs is a count on Together, so OpenAI's boolean is dropped",
            ),
            {**_TO_MAX_TOKENS, **_STRIP_GATEWAY},
        ),
        Preset(
            "groq",
            "Groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            _caps(
                native=(
                    *_CORE,
                    "max_completion_tokens",
                    "parallel_tool_calls",
                    "user",
                    "reasoning_effort",
                    "service_tier",
                ),
                translated=_GATEWAY_ONLY,
                notes="n must be 1; logprobs and logit_bias are not supported",
            ),
            _STRIP_GATEWAY,
        ),
        Preset(
            "deepseek",
            "DeepSeek",
            "https://api.deepseek.com/v1",
            "DEEPSEEK_API_KEY",
            _caps(
                native=(*_CORE, "logprobs", "top_logprobs"),
                translated=("max_completion_tokens", *_GATEWAY_ONLY),
                notes="deepseek-reasoner returns reasoning_content natively",
            ),
            {**_TO_MAX_TOKENS, **_STRIP_GATEWAY},
        ),
        Preset(
            "mistral",
            "Mistral AI",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            _caps(
                native=(
                    *(p for p in _CORE if p != "seed"),
                    "n",
                    "parallel_tool_calls",
                    "prediction",
                ),
                translated=("seed", "max_completion_tokens", *_GATEWAY_ONLY),
                unknown="unsupported",
                notes="rejects unknown fields; seed is sent as random_seed",
            ),
            {"seed": _rename("random_seed"), **_TO_MAX_TOKENS, **_STRIP_GATEWAY},
        ),
        Preset(
            "fireworks",
            "Fireworks AI",
            "https://api.fireworks.ai/inference/v1",
            "FIREWORKS_API_KEY",
            _caps(
                native=(
                    *_CORE,
                    "max_completion_tokens",
                    "n",
                    "logprobs",
                    "top_logprobs",
                    "user",
                    "top_k",
                    "min_p",
                    "reasoning_effort",
                ),
                translated=_GATEWAY_ONLY,
            ),
            _STRIP_GATEWAY,
        ),
        Preset(
            "vllm",
            "vLLM",
            "http://localhost:8000/v1",
            "VLLM_API_KEY",
            _caps(
                native=(
                    *_CORE,
                    "max_completion_tokens",
                    "n",
                    "logit_bias",
                    "logprobs",
                    "top_logprobs",
                    "parallel_tool_calls",
                    "user",
                    "reasoning_effort",
                    "top_k",
                    "min_p",
                    "use_beam_search",
                    "length_penalty",
                ),
                translated=(*_GUIDED, *_GATEWAY_ONLY),
                notes="guided_* are sent as structured_outputs (vLLM ≥ 0.12)",
            ),
            {
                "guided_json": _nest("structured_outputs", "json"),
                "guided_regex": _nest("structured_outputs", "regex"),
                "guided_choice": _nest("structured_outputs", "choice"),
                "guided_grammar": _nest("structured_outputs", "grammar"),
                **_STRIP_GATEWAY,
            },
            needs_key=False,
        ),
        Preset(
            "ollama",
            "Ollama",
            "http://localhost:11434/v1",
            None,
            _caps(
                native=(*_CORE, "reasoning_effort"),
                translated=("max_completion_tokens", *_GATEWAY_ONLY),
                notes="one choice per request; top_k only through Ollama's native API",
            ),
            {**_TO_MAX_TOKENS, **_STRIP_GATEWAY},
            needs_key=False,
        ),
        Preset(
            "llama-server",
            "llama.cpp server",
            "http://localhost:8080/v1",
            None,
            _caps(
                native=(
                    *_CORE,
                    "logit_bias",
                    "logprobs",
                    "top_logprobs",
                    "parallel_tool_calls",
                    "top_k",
                    "min_p",
                ),
                translated=(
                    "max_completion_tokens",
                    "guided_json",
                    "guided_grammar",
                    *_GATEWAY_ONLY,
                ),
                notes="guided_json → json_schema, guided_grammar → grammar (GBNF)",
            ),
            {
                "guided_json": _rename("json_schema"),
                "guided_grammar": _rename("grammar"),
                **_TO_MAX_TOKENS,
                **_STRIP_GATEWAY,
            },
            needs_key=False,
        ),
        Preset(
            "lmstudio",
            "LM Studio",
            "http://localhost:1234/v1",
            None,
            _caps(
                native=(*_CORE, "top_k", "min_p", "logit_bias"),
                translated=("max_completion_tokens", *_GATEWAY_ONLY),
            ),
            {**_TO_MAX_TOKENS, **_STRIP_GATEWAY},
            needs_key=False,
        ),
    )
}
