"""A dialect's descriptor: all the rest of the gateway needs to know about it.

Each dialect folder declares one `Dialect`: the name written as `dialect = "…"`, the
pydantic model of its `[providers.NAME]` table, a factory that builds its provider (which
imports the provider module only when one is configured, so a gateway that never uses a
dialect never loads its code), where its upstream lives and which key variable it reads,
and its capability matrix. The config loader, the provider registry and the command line
read descriptors; none of them names a dialect.

A descriptor imports neither pydantic nor its dialect's code: the config model is given
as a function that imports it, so `crossroads providers list` (which reads only names,
URLs and capability matrices) starts without building any config model.

A dialect whose code needs an optional extra (the embedded llama.cpp engine) lists the
modules it needs; configuring it without them is a configuration error naming the
`pip install` that fixes it, not an ImportError on the first request.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from crossroads.providers.capabilities import Capabilities

if TYPE_CHECKING:
    from crossroads.providers.base import Provider
    from crossroads.providers.settings import ProviderConfig

__all__ = ["Dialect", "Listing", "installed"]

Settings = TypeVar("Settings", bound="ProviderConfig")


@dataclass(frozen=True, slots=True)
class Listing:
    """One row of `crossroads providers list`: something a user can configure."""

    name: str
    configure: str  # the line that selects it, e.g. `dialect = "gemini"`
    base_url: str  # where it lives, or a note such as "(in-process)"
    key_env: str  # the variable its key is conventionally kept in ("" when none)
    capabilities: Capabilities


@dataclass(frozen=True, slots=True)
class Dialect(Generic[Settings]):
    name: str
    # The model of this dialect's `[providers.NAME]` table, or a function that imports and
    # returns it (what the built-in dialects give, so that listing them loads no pydantic).
    config: type[Settings] | Callable[[], type[Settings]]
    # Builds the provider for one table; imports the provider module when called.
    build: Callable[[str, Settings], Provider]
    capabilities: Capabilities
    # The upstream's default base URL; None when each provider must give its own, or when
    # the dialect runs in-process.
    base_url: str | None = None
    in_process: bool = False
    # The environment variable its key is conventionally kept in.
    key_env: str | None = None
    # Modules the dialect cannot run without that the core install does not bring, and
    # the `crossroads[extra]` that brings them.
    requires: tuple[str, ...] = ()
    extra: str | None = None
    # Rows for `crossroads providers list`; None: one row for the dialect itself.
    listings: Callable[[], list[Listing]] | None = None

    def config_model(self) -> type[Settings]:
        """The model that validates this dialect's `[providers.NAME]` tables."""
        if isinstance(self.config, type):
            return self.config
        return self.config()

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        return [module for module in self.requires if not installed(module)]

    def install_hint(self) -> str:
        """What to run so that `missing()` is empty."""
        return f"pip install 'crossroads[{self.extra}]'" if self.extra else "install them"

    def rows(self) -> list[Listing]:
        if self.listings is not None:
            return self.listings()
        return [
            Listing(
                self.name,
                f'dialect = "{self.name}"',
                self.base_url or ("(in-process)" if self.in_process else "(yours)"),
                self.key_env or "",
                self.capabilities,
            )
        ]


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
