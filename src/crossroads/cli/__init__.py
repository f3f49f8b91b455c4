"""The `crossroads` command line: one module per command group, each docstring its help text.

A command's module is imported when that command runs, or when the whole command line is
built for `--help`, so none of them imports more than typer at module level: the server,
the database layer, numpy and the HTTP clients are imported inside the commands that use
them. `crossroads --help` and the client commands therefore start in a fraction of the time
the server stack takes to load (`benchmarks/cli_startup.py` measures it;
`tests/test_cli_startup.py` keeps it so).
Help text is plain (no rich markup), so config snippets such as `[[keys]]` show as written.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

__all__ = ["app", "main"]

# Command name → (module in this package, attribute): the function of a command, the typer
# group of a group, in the order `--help` lists them.
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "chat": ("chat", "chat"),
    "logs": ("logs", "logs"),
    "usage": ("logs", "usage"),
    "eval": ("evaluate", "evaluate"),
}
_GROUPS: dict[str, tuple[str, str]] = {
    "config": ("configuration", "config_app"),
    "providers": ("providers", "providers_app"),
    "keys": ("keys", "keys_app"),
    "router": ("router", "router_app"),
    "datasets": ("datasets", "datasets_app"),
    "finetune": ("finetune", "finetune_app"),
    "collections": ("collections", "collections_app"),
}


def _load(where: tuple[str, str]) -> Any:
    module, attribute = where
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


def _app(only: str | None = None) -> typer.Typer:
    """The command line, or just one of its commands or groups (`only`)."""
    built = typer.Typer(
        help="Crossroads: a self-hosted, OpenAI-compatible LLM gateway and router.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    for name, command in _COMMANDS.items():
        if only in (None, name):
            built.command(name)(_load(command))
    for name, group in _GROUPS.items():
        if only in (None, name):
            built.add_typer(_load(group), name=name)
    if only is not None:
        built.callback()(_one_command)  # a group of one, so `crossroads NAME …` still parses
    return built


def _one_command() -> None:
    """Crossroads: a self-hosted, OpenAI-compatible LLM gateway and router."""


_whole: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    """`app`, the whole command line, built (every command module imported) on first use."""
    global _whole
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _whole is None:
        _whole = _app()
    return _whole


def main() -> None:
    """Run the command named on the command line.

    typer turns every command's signature into options before running any (about 50 ms for
    all of them); a known command name builds only that command, so `crossroads logs`
    starts as quickly as a one-command program. Anything else (`--help`, a typo) gets the
    whole command line, with its full help and suggestions.
    """
    name = sys.argv[1] if len(sys.argv) > 1 else None
    command_line = _app(name) if name in _COMMANDS or name in _GROUPS else __getattr__("app")
    command_line(prog_name="crossroads")
