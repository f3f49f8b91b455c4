"""The `crossroads` command line: one module per command group, each docstring its help text.

Every command module is imported at start-up to build the help, so none of them imports
more than typer at module level: the server, the database layer, numpy and the HTTP
clients are imported inside the commands that use them. `crossroads --help` and the
client commands therefore start in a fraction of the time the server stack takes to load
(`benchmarks/cli_startup.py` measures it; `tests/test_cli_startup.py` keeps it so).
Help text is plain (no rich markup), so config snippets such as `[[keys]]` show as written.
"""

from __future__ import annotations

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

app = typer.Typer(
    help="Crossroads: a self-hosted, OpenAI-compatible LLM gateway and router.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(serve)
app.command()(chat)
app.command()(logs)
app.command()(usage)
app.command("eval")(evaluate)
app.add_typer(config_app, name="config")
app.add_typer(providers_app, name="providers")
app.add_typer(keys_app, name="keys")
app.add_typer(router_app, name="router")
app.add_typer(datasets_app, name="datasets")
app.add_typer(finetune_app, name="finetune")
app.add_typer(collections_app, name="collections")


def main() -> None:
    app()
