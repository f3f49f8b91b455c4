"""`crossroads datasets …`: build, edit, split and export datasets through a running gateway."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crossroads.cli.common import JsonOption, cell, fail, note, print_json, print_table
from crossroads.cli.gateway_calls import ApiKeyOption, UrlOption, api, api_lines

__all__ = ["datasets_app"]

datasets_app = typer.Typer(
    help="Datasets from the request log or JSONL files, for fine-tuning and evaluations "
    "(through a running gateway, as the key in $CROSSROADS_API_KEY).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_URL = "http://127.0.0.1:8000"
IdArgument = Annotated[str, typer.Argument(help="The dataset's id (ds_…).")]


def _rule(text: str, regex: bool) -> dict[str, Any]:
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise fail(f"A pruning rule is NAME=PATTERN, got {text!r}.")
    return {"name": name, "pattern": pattern, "regex": regex}


def _print_datasets(datasets: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(pad_edge=False)
    for column in ("id", "name", "train", "test", "test fraction", "seed", "pruning", "created"):
        table.add_column(column, no_wrap=True)
    for d in datasets:
        rows = d.get("rows") or {}
        table.add_row(
            *(
                cell(v)
                for v in (
                    d["id"],
                    d["name"],
                    str(rows.get("train", "")),
                    str(rows.get("test", "")),
                    f"{d['test_fraction']:g}",
                    str(d["seed"]),
                    ", ".join(r["name"] for r in d["pruning"]),
                    d["created_at"][:19],
                )
            )
        )
    print_table(table)


@datasets_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to tell the dataset by.")],
    test_fraction: Annotated[float, typer.Option(help="Share of prompts in the test split.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the train/test assignment.")] = 0,
    prune: Annotated[
        list[str] | None, typer.Option(help="NAME=TEXT stripped from exported rows; repeatable.")
    ] = None,
    prune_regex: Annotated[
        list[str] | None, typer.Option(help="NAME=REGEX stripped from exported rows; repeatable.")
    ] = None,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an empty dataset."""
    rules = [_rule(r, False) for r in prune or ()] + [_rule(r, True) for r in prune_regex or ()]
    body = {"name": name, "test_fraction": test_fraction, "seed": seed, "pruning": rules}
    created = api(url, api_key, "POST", "/v1/datasets", body=body)
    print_json(created) if as_json else _print_datasets([created])


@datasets_app.command("list")
def list_(url: UrlOption = _URL, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """The key's datasets (and its team's)."""
    listing = api(url, api_key, "GET", "/v1/datasets")["data"]
    print_json(listing) if as_json else _print_datasets(listing)


@datasets_app.command("show")
def show(
    dataset_id: IdArgument,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dataset, with its rows per split."""
    found = api(url, api_key, "GET", f"/v1/datasets/{dataset_id}")
    print_json(found) if as_json else _print_datasets([found])


@datasets_app.command("delete")
def delete(dataset_id: IdArgument, url: UrlOption = _URL, api_key: ApiKeyOption = None) -> None:
    """Delete a dataset and its rows."""
    api(url, api_key, "DELETE", f"/v1/datasets/{dataset_id}")
    note(f"Deleted {dataset_id}.")


@datasets_app.command("add")
def add(
    dataset_id: IdArgument,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="A log filter as in GET /v1/logs: tags=golden, model=gpt-4o, "
            "metadata.KEY=VALUE, start=…; repeatable.",
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="A JSONL file of OpenAI chat or preference lines.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows from the log.")] = None,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Add rows: from the request log (--where) or from a JSONL file (--file)."""
    path = f"/v1/datasets/{dataset_id}/rows"
    if file is not None:
        if where:
            raise fail("Give either --where or --file, not both.")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise fail(f"Cannot read {file}: {exc}") from None
        added = api(url, api_key, "POST", path, data=data, content_type="application/jsonl")
    else:
        filters: dict[str, str] = {}
        for item in where or ():
            key, sep, value = item.partition("=")
            if not sep:
                raise fail(f"A filter is NAME=VALUE, got {item!r}.")
            filters[key] = value
        if not filters:
            raise fail("Give --where filters (e.g. --where tags=golden) or --file.")
        body: dict[str, Any] = {"from_logs": filters}
        if limit is not None:
            body["limit"] = limit
        added = api(url, api_key, "POST", path, body=body)
    counts = added["rows"]
    note(f"Added {added['added']} rows: {counts['train']} train, {counts['test']} test.")


@datasets_app.command("split")
def split(
    dataset_id: IdArgument,
    test_fraction: Annotated[float, typer.Option(help="Share of prompts in the test split.")],
    seed: Annotated[int, typer.Option(help="Seed of the assignment.")] = 0,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Re-assign train/test for a fraction and seed (the same seed gives the same split)."""
    body = {"test_fraction": test_fraction, "seed": seed}
    updated = api(url, api_key, "POST", f"/v1/datasets/{dataset_id}/split", body=body)
    _print_datasets([updated])


@datasets_app.command("rows")
def rows(
    dataset_id: IdArgument,
    split_name: Annotated[str | None, typer.Option("--split", help="train or test.")] = None,
    limit: Annotated[int, typer.Option(help="Rows per page.")] = 100,
    after: Annotated[str | None, typer.Option(help="The last row id of the previous page.")] = None,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
) -> None:
    """A page of rows, as JSON."""
    params = {"limit": str(limit)}
    if split_name:
        params["split"] = split_name
    if after:
        params["after"] = after
    print_json(api(url, api_key, "GET", f"/v1/datasets/{dataset_id}/rows", params=params))


@datasets_app.command("edit-row")
def edit_row(
    dataset_id: IdArgument,
    row_id: Annotated[str, typer.Argument(help="The row's id.")],
    changes: Annotated[
        str,
        typer.Argument(help='JSON: {"output": {...}, "messages": [...], "split": "test", …}.'),
    ],
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Change a row's messages, tools, output, rejected answers, score or split."""
    import orjson

    try:
        body = orjson.loads(changes)
    except orjson.JSONDecodeError:
        raise fail("The changes must be a JSON object.") from None
    path = f"/v1/datasets/{dataset_id}/rows/{row_id}"
    print_json(api(url, api_key, "PATCH", path, body=body))


@datasets_app.command("delete-row")
def delete_row(
    dataset_id: IdArgument,
    row_id: Annotated[str, typer.Argument(help="The row's id.")],
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete one row."""
    api(url, api_key, "DELETE", f"/v1/datasets/{dataset_id}/rows/{row_id}")
    note(f"Deleted row {row_id}.")


@datasets_app.command("export")
def export(
    dataset_id: IdArgument,
    format: Annotated[
        str, typer.Option(help="openai (chat SFT), openai-dpo, together-dpo or trl-dpo.")
    ] = "openai",
    split_name: Annotated[str | None, typer.Option("--split", help="train or test.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Export as JSONL, streamed to the file as the gateway sends it."""
    params = {"format": format}
    if split_name:
        params["split"] = split_name
    lines = api_lines(url, api_key, f"/v1/datasets/{dataset_id}/export", params)
    count = 0
    if output is None:
        for line in lines:
            sys.stdout.buffer.write(line)
            count += 1
        sys.stdout.buffer.flush()
    else:
        with output.open("wb") as sink:
            for line in lines:
                sink.write(line)
                count += 1
    note(f"Exported {count} lines.", dim=True)
