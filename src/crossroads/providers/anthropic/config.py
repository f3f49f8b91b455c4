"""The `anthropic` dialect's `[providers.NAME]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crossroads.providers.anthropic.dialect import BASE_URL
from crossroads.providers.settings import HttpProviderConfig

__all__ = ["AnthropicProviderConfig"]


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
