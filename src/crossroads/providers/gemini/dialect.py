"""The `gemini` dialect's descriptor; its table's model is in `config.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossroads.providers.dialect import Dialect
from crossroads.providers.gemini.parameters import GEMINI_CAPABILITIES

if TYPE_CHECKING:
    from crossroads.providers.base import Provider
    from crossroads.providers.gemini.config import GeminiProviderConfig

__all__ = ["BASE_URL", "GEMINI"]

BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


def _config() -> type[GeminiProviderConfig]:
    from crossroads.providers.gemini.config import GeminiProviderConfig

    return GeminiProviderConfig


def _build(name: str, config: GeminiProviderConfig) -> Provider:
    from crossroads.providers.gemini.provider import GeminiProvider

    return GeminiProvider(name, config)


GEMINI = Dialect(
    name="gemini",
    config=_config,
    build=_build,
    capabilities=GEMINI_CAPABILITIES,
    base_url=BASE_URL,
    key_env="GEMINI_API_KEY",
)
