"""The `openai` dialect's descriptor; its table's model is in `config.py`.

`dialect = "openai"` is the default, so a table with only a `preset` or a `base_url` is an
OpenAI-compatible upstream. Its listing is the presets plus the generic server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossroads.providers.dialect import Dialect, Listing
from crossroads.providers.openai.presets import GENERIC_OPENAI, PRESETS

if TYPE_CHECKING:
    from crossroads.providers.base import Provider
    from crossroads.providers.openai.config import OpenAIProviderConfig

__all__ = ["OPENAI"]


def _config() -> type[OpenAIProviderConfig]:
    from crossroads.providers.openai.config import OpenAIProviderConfig

    return OpenAIProviderConfig


def _build(name: str, config: OpenAIProviderConfig) -> Provider:
    from crossroads.providers.openai.provider import OpenAIProvider

    return OpenAIProvider(name, config)


def _listings() -> list[Listing]:
    rows = [
        Listing(name, f'preset = "{name}"', p.base_url, p.key_env or "", p.capabilities)
        for name, p in PRESETS.items()
    ]
    rows.append(Listing("openai-compatible", 'base_url = "…"', "(yours)", "", GENERIC_OPENAI))
    return rows


OPENAI = Dialect(
    name="openai",
    config=_config,
    build=_build,
    capabilities=GENERIC_OPENAI,
    listings=_listings,
)
