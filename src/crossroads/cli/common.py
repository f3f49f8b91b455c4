"""What the commands share: the `--config` option, loading it, and printing messages.

Messages go to stderr through click, never through rich markup, so a config snippet such as
`[[keys]]` or a name with brackets in it is printed exactly as written, on one line however
narrow the terminal. Text put into rich tables goes through `cell`, for the same reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crossroads.environ import CONFIG_ENV

if TYPE_CHECKING:
    from crossroads.config import Config

__all__ = [
    "ConfigOption",
    "JsonOption",
    "cell",
    "database_url",
    "error",
    "fail",
    "load",
    "note",
    "print_json",
    "print_table",
    "warning",
]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help=f"TOML config file (default: ${CONFIG_ENV}, ./crossroads.toml)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def error(message: str) -> None:
    typer.secho(message, fg="red", err=True)


def warning(message: str) -> None:
    typer.secho(message, fg="yellow", err=True)


def note(message: str, *, dim: bool = False) -> None:
    typer.secho(message, dim=dim, err=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as the one line that says what went wrong; raise what this returns."""
    error(message)
    return typer.Exit(code)


def load(config_path: Path | None) -> tuple[Config | None, Path | None]:
    """The config named by `--config`, `$CROSSROADS_CONFIG` or `./crossroads.toml`, if any.

    An unreadable or invalid file ends the command with exit status 2 and every problem.
    """
    from crossroads.config import ConfigError, find_config_file, load_config

    path = find_config_file(config_path)
    if path is None:
        return None, None
    try:
        return load_config(path), path
    except ConfigError as exc:
        raise fail(str(exc)) from None


def database_url(config_path: Path | None) -> str:
    """The request log's database: the config's `[storage] database_url`, else the default
    SQLite file. Only that setting is read (see `crossroads.config_file`), so reading the
    log neither waits for nor depends on the rest of the config being valid."""
    from crossroads.config_file import find_config_file, storage_database_url

    path = find_config_file(config_path)
    try:
        url = storage_database_url(path) if path is not None else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    if url:
        return url
    from crossroads.storage.database import default_database_url

    return default_database_url()


def cell(value: object) -> str:
    """`value` as text for a rich table cell, its brackets shown rather than read as markup."""
    from rich.markup import escape

    return escape(str(value))


def print_table(table: Any) -> None:
    """Print a rich table: as wide as the terminal on one, and never cut short when piped
    or redirected (rich would otherwise assume 80 columns and end cells with '…')."""
    import sys

    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 10_000).print(table)


def print_json(value: Any) -> None:
    import orjson

    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
