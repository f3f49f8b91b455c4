"""`crossroads collections`: create, add with a progress bar, list, search, delete."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from crossroads.cli import app

runner = CliRunner()


def test_collection_lifecycle_on_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "crossroads.toml"
    config.write_text(f'[storage]\ndatabase_url = "sqlite:///{tmp_path / "c.db"}"\n')
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kiwi.md").write_text("# Kiwi\n\nThe kiwi is a flightless bird from New Zealand.")
    (docs / "page.html").write_text("<p>Saturn has a ring system made of ice.</p>")
    (docs / "image.png").write_bytes(b"\x89PNG")
    c = ["--config", str(config)]

    created = runner.invoke(app, ["collections", "create", "notes", *c])
    assert created.exit_code == 0, created.output
    store_id = created.stdout.strip()
    assert store_id.startswith("vs_")

    added = runner.invoke(app, ["collections", "add", store_id, str(docs), *c])
    assert added.exit_code == 0, added.output
    assert "skipped" in added.stderr and "added 2 chunks from 3 file(s)" in added.stderr
    assert "embedding chunks" in added.stdout  # the progress bar

    listed = runner.invoke(app, ["collections", "list", "--json", *c])
    assert json.loads(listed.stdout)[0] | {"created_at": None} == {
        "id": store_id,
        "name": "notes",
        "files": 2,
        "chunks": 2,
        "created_at": None,
    }
    found = runner.invoke(app, ["collections", "search", store_id, "rings of Saturn", "--json", *c])
    assert json.loads(found.stdout)[0]["source"] == "page.html"

    other = runner.invoke(app, ["collections", "search", store_id, "x", "--owner", "k2", *c])
    assert other.exit_code == 2 and "no collection" in other.stderr
    assert runner.invoke(app, ["collections", "delete", store_id, *c]).exit_code == 0
    assert runner.invoke(app, ["collections", "delete", store_id, *c]).exit_code == 2
