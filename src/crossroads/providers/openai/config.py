"""The `openai` dialect's `[providers.NAME]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from crossroads.providers.openai.presets import PRESETS
from crossroads.providers.settings import HttpProviderConfig

__all__ = ["OpenAIProviderConfig"]


class OpenAIProviderConfig(HttpProviderConfig):
    """An OpenAI-compatible HTTP upstream (OpenAI, vLLM, llama-server, Ollama, …).

    `preset` names a known provider (`crossroads providers list`), which supplies the base
    URL and the capability matrix; `base_url` is required without one.
    """

    dialect: Literal["openai"] = "openai"
    preset: str | None = None

    @model_validator(mode="after")
    def _preset_or_url(self) -> OpenAIProviderConfig:
        if self.preset is not None and self.preset not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown preset {self.preset!r} (known: {known})")
        if self.base_url is None:
            if self.preset is None:
                raise ValueError("needs `base_url`, or a `preset` that supplies it")
            object.__setattr__(self, "base_url", PRESETS[self.preset].base_url)
        return self

    @property
    def url(self) -> str:
        assert self.base_url is not None  # set by the validator
        return self.base_url
