"""Builds the configured providers: dialect name → class, one instance per config entry.

Dialect modules are imported only when a provider of theirs is configured, so a gateway
that serves only OpenAI-compatible upstreams never loads llama.cpp.
"""

from __future__ import annotations

from crossroads.config import (
    AnthropicProviderConfig,
    Config,
    GeminiProviderConfig,
    LlamaCppProviderConfig,
    OpenAIProviderConfig,
)
from crossroads.providers.base import Provider
from crossroads.providers.openai import OpenAIProvider

__all__ = ["build_providers"]


def build_providers(config: Config) -> dict[str, Provider]:
    """One provider per `[providers.NAME]` table, not yet started."""
    providers: dict[str, Provider] = {}
    for name, provider_config in config.providers.items():
        if isinstance(provider_config, OpenAIProviderConfig):
            providers[name] = OpenAIProvider(name, provider_config)
        elif isinstance(provider_config, AnthropicProviderConfig):
            from crossroads.providers.anthropic.provider import AnthropicProvider

            providers[name] = AnthropicProvider(name, provider_config)
        elif isinstance(provider_config, GeminiProviderConfig):
            from crossroads.providers.gemini.provider import GeminiProvider

            providers[name] = GeminiProvider(name, provider_config)
        elif isinstance(provider_config, LlamaCppProviderConfig):
            # Imported here: xllamacpp is only loaded when a local model is configured.
            from crossroads.providers.llamacpp.provider import LlamaCppProvider

            providers[name] = LlamaCppProvider(name, provider_config)
    return providers
