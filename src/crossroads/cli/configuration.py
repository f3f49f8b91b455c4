"""`crossroads config check`: validate a config file as `serve` would, without serving."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from crossroads.cli.common import ConfigOption, fail, load, note, warning
from crossroads.environ import CONFIG_ENV

if TYPE_CHECKING:
    from crossroads.config import Config

__all__ = ["NO_CONFIG", "check_router", "config_app"]

# Exit status when there is no config file to check (0: valid, 2: invalid).
NO_CONFIG = 1

config_app = typer.Typer(
    help="Inspect and validate configuration.", no_args_is_help=True, rich_markup_mode=None
)


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the config file without serving.

    Every problem is printed on its own line, naming the dotted path of the value to fix
    (an unset environment variable names the variable; all of them are listed at once).

    \b
    Exit status:
      0  the config is valid (warnings, if any, are printed)
      1  no config file was given or found (--config, $CROSSROADS_CONFIG, ./crossroads.toml)
      2  the config is invalid, or the file cannot be read
    """
    loaded, path = load(config)
    if loaded is None:
        note(
            f"No config file given or found (--config, ${CONFIG_ENV}, ./crossroads.toml); "
            "`crossroads serve` would use the built-in demo."
        )
        raise typer.Exit(NO_CONFIG)
    try:
        warnings = check_router(loaded)
    except ValueError as exc:  # RouterArtifactError: unreadable artifact or a missing profile
        raise fail(f"{path}: router: {exc}") from None
    for text in warnings:
        warning(f"{path}: router: {text}")
    deployments = sum(len(m.deployments) for m in loaded.models.values())
    typer.echo(
        f"{path}: OK — {len(loaded.providers)} provider(s), {len(loaded.models)} model(s), "
        f"{deployments} deployment(s), {len(loaded.keys)} key(s)"
    )


def check_router(config: Config) -> list[str]:
    """Load the router artifact and map the configured models onto it, as serving will.

    Raises `ValueError` for what would fail; returns warnings for what would never route.
    A config that routes no model and keeps the packaged artifact has nothing to check, so
    the artifact (and numpy) is not loaded for it.
    """
    router = config.router
    if (
        router.artifact is None
        and not router.retrain_data
        and not router.rules
        and not any(m.routable or m.router_profile for m in config.models.values())
    ):
        return []
    from crossroads.catalog import Catalog
    from crossroads.learned.serve import LearnedRouter, load_router

    learned = LearnedRouter(
        load_router(config.router), Catalog.from_config(config), config.models, config.router
    )
    for i, data in enumerate(config.router.retrain_data):
        if not Path(data).exists():
            raise ValueError(f"retrain_data[{i}] = {data!r}: no such file or directory")
    return [
        f"models.{name} is routable but the artifact has no profile for it and it sets "
        'neither `quality` nor `router_profile`: model "router" will always exclude it'
        for name in learned.unrated()
    ]
