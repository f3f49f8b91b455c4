"""The `crossroads` command line: one module per command group, each docstring its help text.

Every command module is imported at start-up to build the help, so none of them imports
more than typer at module level: the server, the database layer, numpy and the HTTP
clients are imported inside the commands that use them. `crossroads --help` and the
client commands therefore start in a fraction of the time the server stack takes to load
(`benchmarks/cli_startup.py` measures it; `tests/test_cli_startup.py` keeps it so).
Help text is plain (no rich markup), so config snippets such as `[[keys]]` show as written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from crossroads.cli.chat import chat
from crossroads.cli.collections import collections_app
from crossroads.cli.configuration import config_app
from crossroads.cli.datasets import datasets_app
from crossroads.cli.evaluate import evaluate
from crossroads.cli.finetune import finetune_app
from crossroads.cli.keys import keys_app
from crossroads.cli.logs import logs, usage
from crossroads.cli.providers import providers_app
from crossroads.cli.router import router_app
from crossroads.cli.serve import serve

__all__ = ["app", "main"]

_COMMANDS: dict[str, Callable[..., None]] = {
    "serve": serve,
    "chat": chat,
    "logs": logs,
    "usage": usage,
    "eval": evaluate,
}
_GROUPS: dict[str, typer.Typer] = {
    "config": config_app,
    "providers": providers_app,
    "keys": keys_app,
    "router": router_app,
    "datasets": datasets_app,
    "finetune": finetune_app,
    "collections": collections_app,
}


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
            built.command(name)(command)
    for name, group in _GROUPS.items():
        if only in (None, name):
            built.add_typer(group, name=name)
    if only is not None:
        built.callback()(_one_command)  # a group of one, so `crossroads NAME …` still parses
    return built


def _one_command() -> None:
    """Crossroads: a self-hosted, OpenAI-compatible LLM gateway and router."""


app = _app()


def main() -> None:
    """Run the command named on the command line.

    typer turns every command's signature into options before running any (about 50 ms for
    all of them); a known command name builds only that command, so `crossroads logs`
    starts as quickly as a one-command program. Anything else (`--help`, a typo) gets the
    whole command line, with its full help and suggestions.
    """
    name = sys.argv[1] if len(sys.argv) > 1 else None
    (_app(name) if name in _COMMANDS or name in _GROUPS else app)(prog_name="crossroads")
