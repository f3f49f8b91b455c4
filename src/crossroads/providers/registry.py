"""The known dialects, and the providers built from the configured ones.

Every dialect is a `Dialect` descriptor declared in its own folder; this module lists the
built-in ones (one line each) and accepts more through `register_dialect`. The config
loader validates each `[providers.NAME]` table with the model its dialect declares, the
command line lists what descriptors offer, and `build_providers` calls their factories,
which import a dialect's code only when a provider of it is configured: a gateway that
serves only OpenAI-compatible upstreams never loads llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from crossroads.providers.anthropic.dialect import ANTHROPIC
from crossroads.providers.dialect import Dialect, Listing
from crossroads.providers.gemini.dialect import GEMINI
from crossroads.providers.llamacpp.dialect import LLAMACPP
from crossroads.providers.openai.dialect import OPENAI

if TYPE_CHECKING:
    from crossroads.config import Config
    from crossroads.providers.base import Provider
    from crossroads.providers.settings import ProviderConfig

__all__ = [
    "DEFAULT_DIALECT",
    "build_providers",
    "dialects",
    "listings",
    "register_dialect",
    "validate_provider_config",
]

# A table without `dialect = "…"` speaks OpenAI's.
DEFAULT_DIALECT = "openai"

_DIALECTS: dict[str, Dialect[Any]] = {d.name: d for d in (OPENAI, ANTHROPIC, GEMINI, LLAMACPP)}


def register_dialect(dialect: Dialect[Any]) -> Callable[[], None]:
    """Make `dialect` known to config, serving and the command line; returns its undo."""
    if dialect.name in _DIALECTS:
        raise ValueError(f"dialect {dialect.name!r} is already registered")
    _DIALECTS[dialect.name] = dialect

    def unregister() -> None:
        if _DIALECTS.get(dialect.name) is dialect:
            del _DIALECTS[dialect.name]

    return unregister


def dialects() -> Mapping[str, Dialect[Any]]:
    """The known dialects by name, built-in ones first."""
    return dict(_DIALECTS)


def listings() -> list[Listing]:
    """Everything `crossroads providers list` offers, dialect by dialect."""
    return [row for dialect in _DIALECTS.values() for row in dialect.rows()]


def validate_provider_config(value: Any) -> ProviderConfig:
    """A `[providers.NAME]` table → its dialect's config model (pydantic validator).

    Errors inside the table keep their location below `providers.NAME`; an unknown dialect,
    or one whose optional extra is not installed, is one error on the table itself.
    """
    from pydantic_core import PydanticCustomError  # loaded with the config, not the listing

    from crossroads.providers.settings import ProviderConfig

    if isinstance(value, ProviderConfig):
        return value
    name = value.get("dialect", DEFAULT_DIALECT) if isinstance(value, Mapping) else DEFAULT_DIALECT
    dialect = _DIALECTS.get(str(name))
    if dialect is None:
        raise PydanticCustomError(
            "unknown_dialect", "unknown dialect (known: {known})", {"known": ", ".join(_DIALECTS)}
        )
    if missing := dialect.missing():
        raise PydanticCustomError(
            "missing_extra",
            "the {dialect} dialect needs {modules}, which is not installed: {hint}",
            {
                "dialect": dialect.name,
                "modules": ", ".join(missing),
                "hint": dialect.install_hint(),
            },
        )
    config: ProviderConfig = dialect.config_model().model_validate(value)
    return config


def build_providers(config: Config) -> dict[str, Provider]:
    """One provider per `[providers.NAME]` table, not yet started."""
    return {
        name: _DIALECTS[provider_config.dialect].build(name, provider_config)
        for name, provider_config in config.providers.items()
    }
