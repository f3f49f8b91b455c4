"""Which config file applies, and the one setting the log readers need, without validating.

`crossroads logs` and `crossroads usage` only need `[storage] database_url`. Validating the
whole file builds every provider, guardrail and request model (a third of a second of
start-up) and would refuse to show the log of a gateway whose config has just been broken,
which is when the log is most wanted. This module imports nothing beyond the standard
library; `crossroads.config` validates everything else.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from crossroads.environ import CONFIG_ENV

__all__ = ["DEFAULT_CONFIG_NAME", "find_config_file", "storage_database_url"]

DEFAULT_CONFIG_NAME = "crossroads.toml"


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """`--config`, else `$CROSSROADS_CONFIG`, else `./crossroads.toml` if it exists."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def storage_database_url(path: Path) -> str | None:
    """`[storage] database_url` of the file at `path` (None when unset).

    Raises `ValueError` saying what is wrong when the file cannot be read, is not TOML, or
    the setting is not a string.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    storage = data.get("storage", {})
    url = storage.get("database_url") if isinstance(storage, dict) else None
    if url is not None and not isinstance(url, str):
        raise ValueError(f"{path}: storage.database_url: must be a string")
    return url
