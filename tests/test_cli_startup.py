"""What each command line command imports: start-up time is made of imports, so a client
command must not load the server stack, the database layer or the validated config unless
it uses them. Timings are measured by benchmarks/cli_startup.py; this keeps the imports
that made them so (a module list does not depend on how busy the machine is)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossroads.storage.migrate import MIGRATIONS_DIR, alembic_config, head_revision

SERVER = {"starlette", "uvicorn", "aiohttp", "crossroads.server", "crossroads.pipeline"}
DATABASE = {"sqlalchemy", "alembic", "aiosqlite", "asyncpg"}
CONFIG = {"crossroads.config", "crossroads.protocol.chat"}
HEAVY = {"numpy", "xllamacpp", "redis"}
# The request's wire models (~40 ms of pydantic classes): serving needs them, reading the
# config does not (capability matrices name parameters through protocol/extensions.py).
WIRE = {"crossroads.protocol.chat"}
# Optional config tables whose models are built only when a file has them (config.py).
OPTIONAL_TABLES = {"crossroads.guardrails.config", "crossroads.cache.config"}
# What a dialect folder declares for config and listings; the rest of it is translation
# code, imported when a provider of that dialect is built.
DIALECT_DECLARATIONS = {"dialect", "parameters", "presets", "config"}


def _imported(args: list[str], cwd: Path) -> set[str]:
    """Top-level and package names the command imports, from `python -X importtime`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSROADS_")}
    env.update(HOME=str(cwd), XDG_DATA_HOME=str(cwd))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crossroads", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in done.stderr.splitlines() if x.startswith("import time:")]
    return {x.rsplit("|", 1)[1].strip() for x in lines[1:]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose request log exists and is migrated, as on a second call."""
    directory = tmp_path_factory.mktemp("startup")
    (directory / "crossroads.toml").write_text(
        "[storage]\n"
        f'database_url = "sqlite+aiosqlite:///{directory / "log.db"}"\n'
        "[providers.up]\n"
        'base_url = "http://127.0.0.1:9/v1"\n'
        "[models.m]\n"
        'deployments = [{ provider = "up", model = "m" }]\n'
    )
    first = _imported(["logs"], directory)
    assert "alembic" in first  # the first call creates the schema
    return directory


@pytest.mark.parametrize(
    ("args", "unwanted"),
    [
        (["--help"], SERVER | DATABASE | CONFIG | HEAVY | {"pydantic", "rich"}),
        (["logs", "--help"], SERVER | DATABASE | CONFIG | HEAVY),
        (["config", "check"], SERVER | DATABASE | HEAVY | WIRE | OPTIONAL_TABLES),
        # A SQLite log at the newest revision is read without SQLAlchemy (storage/log_reader.py).
        (["logs", "--limit", "5"], SERVER | CONFIG | HEAVY | DATABASE | {"greenlet"}),
        (["usage", "--json"], SERVER | CONFIG | HEAVY | DATABASE | {"greenlet"}),
        (["providers", "list"], SERVER | DATABASE | CONFIG | HEAVY | {"pydantic"}),
        (["providers", "matrix"], SERVER | DATABASE | CONFIG | HEAVY | {"pydantic"}),
        (
            ["keys", "list", "--url", "http://127.0.0.1:9", "--master-key", "k"],
            SERVER | DATABASE | CONFIG | HEAVY,
        ),
        (["chat", "hi", "--url", "http://127.0.0.1:9/v1"], SERVER | DATABASE | CONFIG | HEAVY),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_command_imports_only_what_it_uses(
    workdir: Path, args: list[str], unwanted: set[str]
) -> None:
    imported = _imported(args, workdir)
    assert "crossroads.cli" in imported
    assert not imported & unwanted, sorted(imported & unwanted)


@pytest.mark.parametrize(
    "args", [["config", "check"], ["providers", "list"]], ids=lambda v: " ".join(v)
)
def test_no_dialect_translation_code_is_imported_to_read_the_config(
    workdir: Path, args: list[str]
) -> None:
    dialect_code = {
        name
        for name in _imported(args, workdir)
        if name.startswith("crossroads.providers.")
        and name.count(".") == 3
        and name.rsplit(".", 1)[1] not in DIALECT_DECLARATIONS
    }
    assert not dialect_code, sorted(dialect_code)


# What the command modules share; every other module of the package is one command's.
CLI_HELPERS = {"crossroads.cli", "crossroads.cli.common", "crossroads.cli.gateway_calls"}


@pytest.mark.parametrize(
    ("args", "module"),
    [
        (["config", "check"], "crossroads.cli.configuration"),
        (["providers", "list"], "crossroads.cli.providers"),
        (
            ["keys", "list", "--url", "http://127.0.0.1:9", "--master-key", "k"],
            "crossroads.cli.keys",
        ),
        (["chat", "hi", "--url", "http://127.0.0.1:9/v1"], "crossroads.cli.chat"),
    ],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else "",
)
def test_a_command_imports_no_other_commands_module(
    workdir: Path, args: list[str], module: str
) -> None:
    commands = {
        name
        for name in _imported(args, workdir)
        if name.startswith("crossroads.cli.") and name not in CLI_HELPERS
    }
    assert commands <= {module, "crossroads.cli.http"}, sorted(commands)


def test_the_head_revision_from_file_names_is_alembics() -> None:
    """`upgrade` skips Alembic when the database is at `head_revision()`: it must be the head
    Alembic itself would migrate to."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == script.get_current_head()
    assert len(list((MIGRATIONS_DIR / "versions").glob("*.py"))) == len(
        list(script.walk_revisions())
    )
