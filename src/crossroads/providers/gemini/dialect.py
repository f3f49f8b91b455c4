"""The `gemini` dialect's descriptor and `[providers.NAME]` table."""

from __future__ import annotations

from typing import Literal

from crossroads.providers.base import Provider
from crossroads.providers.dialect import Dialect
from crossroads.providers.gemini.parameters import GEMINI_CAPABILITIES
from crossroads.providers.settings import HttpProviderConfig

__all__ = ["GEMINI", "GeminiProviderConfig"]

BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


class GeminiProviderConfig(HttpProviderConfig):
    """Google's Gemini API (generateContent / streamGenerateContent)."""

    dialect: Literal["gemini"]

    @property
    def url(self) -> str:
        return self.base_url or BASE_URL


def _build(name: str, config: GeminiProviderConfig) -> Provider:
    from crossroads.providers.gemini.provider import GeminiProvider

    return GeminiProvider(name, config)


GEMINI = Dialect(
    name="gemini",
    config=GeminiProviderConfig,
    build=_build,
    capabilities=GEMINI_CAPABILITIES,
    base_url=BASE_URL,
    key_env="GEMINI_API_KEY",
)
