"""The `anthropic` dialect's descriptor; its table's model is in `config.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossroads.providers.anthropic.parameters import ANTHROPIC_CAPABILITIES
from crossroads.providers.dialect import Dialect

if TYPE_CHECKING:
    from crossroads.providers.anthropic.config import AnthropicProviderConfig
    from crossroads.providers.base import Provider

__all__ = ["ANTHROPIC", "BASE_URL"]

BASE_URL = "https://api.anthropic.com"


def _config() -> type[AnthropicProviderConfig]:
    from crossroads.providers.anthropic.config import AnthropicProviderConfig

    return AnthropicProviderConfig


def _build(name: str, config: AnthropicProviderConfig) -> Provider:
    from crossroads.providers.anthropic.provider import AnthropicProvider

    return AnthropicProvider(name, config)


ANTHROPIC = Dialect(
    name="anthropic",
    config=_config,
    build=_build,
    capabilities=ANTHROPIC_CAPABILITIES,
    base_url=BASE_URL,
    key_env="ANTHROPIC_API_KEY",
)
