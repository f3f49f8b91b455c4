"""The `anthropic` dialect's descriptor and `[providers.NAME]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crossroads.providers.anthropic.parameters import ANTHROPIC_CAPABILITIES
from crossroads.providers.base import Provider
from crossroads.providers.dialect import Dialect
from crossroads.providers.settings import HttpProviderConfig

__all__ = ["ANTHROPIC", "AnthropicProviderConfig"]

BASE_URL = "https://api.anthropic.com"


class AnthropicProviderConfig(HttpProviderConfig):
    """Anthropic's Messages API."""

    dialect: Literal["anthropic"]
    anthropic_version: str = "2023-06-01"
    # Anthropic requires `max_tokens`; this applies when the caller sets neither
    # `max_tokens` nor `max_completion_tokens`.
    default_max_tokens: int = Field(4096, ge=1)

    @property
    def url(self) -> str:
        return self.base_url or BASE_URL


def _build(name: str, config: AnthropicProviderConfig) -> Provider:
    from crossroads.providers.anthropic.provider import AnthropicProvider

    return AnthropicProvider(name, config)


ANTHROPIC = Dialect(
    name="anthropic",
    config=AnthropicProviderConfig,
    build=_build,
    capabilities=ANTHROPIC_CAPABILITIES,
    base_url=BASE_URL,
    key_env="ANTHROPIC_API_KEY",
)
