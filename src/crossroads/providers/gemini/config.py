"""The `gemini` dialect's `[providers.NAME]` table."""

from __future__ import annotations

from typing import Literal

from crossroads.providers.gemini.dialect import BASE_URL
from crossroads.providers.settings import HttpProviderConfig

__all__ = ["GeminiProviderConfig"]


class GeminiProviderConfig(HttpProviderConfig):
    """Google's Gemini API (generateContent / streamGenerateContent)."""

    dialect: Literal["gemini"]

    @property
    def url(self) -> str:
        return self.base_url or BASE_URL
