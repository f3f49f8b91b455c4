"""`crossroads providers …`: the provider presets and dialects, and what each supports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from crossroads.cli.common import JsonOption, cell, fail, print_json, print_table

if TYPE_CHECKING:
    from crossroads.providers.capabilities import Capabilities

__all__ = ["providers_app"]

providers_app = typer.Typer(
    help="Provider presets, dialects and their capability matrices.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _known_providers() -> dict[str, tuple[str, str, str, Capabilities]]:
    """name → (how to configure it, base URL, key variable, capabilities)."""
    from crossroads.providers.registry import listings

    return {r.name: (r.configure, r.base_url, r.key_env, r.capabilities) for r in listings()}


@providers_app.command("list")
def providers_list(as_json: JsonOption = False) -> None:
    """List provider presets and dialects: how to configure each, its URL and key variable.

    A preset is an OpenAI-compatible provider that needs only a name and a key:

    \b
        [providers.groq]
        preset = "groq"
        api_key = "env:GROQ_API_KEY"
    """
    from rich.table import Table

    known = _known_providers()
    if as_json:
        print_json(
            {
                name: {"configure": how, "base_url": url, "key_env": key or None, "notes": c.notes}
                for name, (how, url, key, c) in known.items()
            }
        )
        return
    table = Table("name", "configure with", "base URL", "key variable", "notes")
    for column in table.columns[:4]:
        column.no_wrap = True
    for name, (how, url, key, capabilities) in known.items():
        table.add_row(*(cell(v) for v in (name, how, url, key, capabilities.notes)))
    print_table(table)


@providers_app.command("matrix")
def providers_matrix(
    names: Annotated[
        list[str] | None, typer.Argument(help="Presets or dialects to show (default: all).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show which request parameters each provider supports: native, translated or unsupported.

    Unsupported parameters are dropped and listed in the response's `dropped_params`, unless
    the request sets `provider.require_parameters: true`.
    """
    from rich.table import Table

    from crossroads.providers.capabilities import MATRIX_PARAMETERS

    known = _known_providers()
    chosen = names or list(known)
    if unknown := [n for n in chosen if n not in known]:
        listed = ", ".join(repr(n) for n in unknown)
        noun = "provider" if len(unknown) == 1 else "providers"
        raise fail(f"unknown {noun} {listed} (known: {', '.join(known)})")
    matrix = {name: {p: known[name][3].support(p) for p in MATRIX_PARAMETERS} for name in chosen}
    if as_json:
        print_json(matrix)
        return
    marks = {"native": "[green]native[/green]", "translated": "[cyan]transl.[/cyan]"}
    table = Table("parameter", *chosen)
    for parameter in MATRIX_PARAMETERS:
        cells = [marks.get(matrix[n][parameter], "[dim]—[/dim]") for n in chosen]
        table.add_row(parameter, *cells)
    table.add_row("(other)", *(cell(known[n][3].unknown) for n in chosen))
    print_table(table)
