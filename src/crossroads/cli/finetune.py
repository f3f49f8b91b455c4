"""`crossroads finetune …`: fine-tune a model on a dataset at an upstream, and register it.

`submit` exports the dataset through the gateway (streamed to a temporary file), uploads it
to the provider's OpenAI-compatible `/files`, creates the job at `/fine_tuning/jobs` and
records it in the gateway's database. `status` reads the job (`--wait` until it ends); once
it has succeeded, `--register NAME` records the model under NAME — the gateway serves it
from its next start (finetune/serving.py) — and prints the equivalent config, with the
dataset's pruning rules under `[pruning]`, so its requests are pruned the way its training
rows were.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crossroads.cli.common import (
    ConfigOption,
    JsonOption,
    cell,
    database_url,
    fail,
    load,
    note,
    print_json,
    print_table,
)
from crossroads.cli.gateway_calls import ApiKeyOption, UrlOption, api, api_lines

if TYPE_CHECKING:
    from crossroads.finetune.client import FineTuningApi
    from crossroads.storage.fine_tune_store import FineTuneJob

__all__ = ["finetune_app", "registration_toml"]

finetune_app = typer.Typer(
    help="Fine-tuning jobs on an upstream's OpenAI-compatible API, from a dataset.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_URL = "http://127.0.0.1:8000"
_METHODS = {"supervised": "openai", "dpo": "openai-dpo"}


def _upstream(config_path: Path | None, provider: str) -> FineTuningApi:
    from crossroads.finetune.client import FineTuningApi

    config, _ = load(config_path)
    if config is None:
        raise fail("No config file: the provider's base_url and key come from it (--config).")
    table = config.providers.get(provider)
    if table is None:
        known = ", ".join(sorted(config.providers)) or "none"
        raise fail(f"No provider {provider!r} in the config (configured: {known}).")
    base_url = getattr(table, "base_url", None)
    if not base_url:
        raise fail(f"Provider {provider!r} has no base_url to send fine-tuning jobs to.")
    return FineTuningApi(base_url, getattr(table, "api_key", None))


async def _with_store(config_path: Path | None, work: Any) -> Any:
    from crossroads.storage.database import create_engine
    from crossroads.storage.fine_tune_store import FineTuneStore
    from crossroads.storage.migrate import upgrade

    engine = create_engine(database_url(config_path))
    try:
        await upgrade(engine)
        return await work(FineTuneStore(engine))
    finally:
        await engine.dispose()


def _print_jobs(jobs: list[FineTuneJob]) -> None:
    from rich.table import Table

    table = Table(pad_edge=False)
    columns = ("job", "dataset", "provider", "base model", "method", "status", "model", "as")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for j in jobs:
        table.add_row(
            *(
                cell(v or "")
                for v in (
                    j.id,
                    j.dataset_id,
                    j.provider,
                    j.base_model,
                    j.method,
                    j.status,
                    j.fine_tuned_model,
                    j.registered_as,
                )
            )
        )
    print_table(table)


@finetune_app.command("submit")
def submit(
    dataset_id: Annotated[str, typer.Argument(help="The dataset's id (ds_…).")],
    provider: Annotated[str, typer.Option(help="The provider (from the config) to train at.")],
    model: Annotated[str, typer.Option(help="The base model to fine-tune (upstream id).")],
    method: Annotated[str, typer.Option(help="supervised (chat SFT) or dpo.")] = "supervised",
    suffix: Annotated[str | None, typer.Option(help="Added to the model's name.")] = None,
    split: Annotated[str | None, typer.Option(help="train, test or all.")] = "train",
    config_path: ConfigOption = None,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the dataset, upload it, and start a fine-tuning job at the provider."""
    import asyncio
    import tempfile
    from datetime import UTC, datetime

    from crossroads.finetune.client import FineTuneError
    from crossroads.storage.fine_tune_store import FineTuneJob

    if method not in _METHODS:
        raise fail(f"--method must be one of {', '.join(_METHODS)}.")
    upstream = _upstream(config_path, provider)
    params = {"format": _METHODS[method]}
    if split and split != "all":
        params["split"] = split
    with tempfile.TemporaryDirectory(prefix="crossroads-ft-") as directory:
        file = Path(directory) / f"{dataset_id}-{_METHODS[method]}.jsonl"
        lines = 0
        with file.open("wb") as sink:
            for line in api_lines(url, api_key, f"/v1/datasets/{dataset_id}/export", params):
                sink.write(line)
                lines += 1
        if lines == 0:
            raise fail(f"The dataset has no {method} rows in split {split!r} to train on.", 1)
        try:
            uploaded = upstream.upload(file)
            created = upstream.create_job(model, uploaded["id"], method=method, suffix=suffix)
        except FineTuneError as exc:
            raise fail(f"The provider refused the job: {exc}", 1) from None
    now = datetime.now(UTC)
    job = FineTuneJob(
        id=created["id"],
        dataset_id=dataset_id,
        provider=provider,
        base_model=model,
        method=method,
        status=created.get("status", "validating_files"),
        file_id=uploaded["id"],
        fine_tuned_model=created.get("fine_tuned_model"),
        key_id=None,
        created_at=now,
        updated_at=now,
    )
    asyncio.run(_with_store(config_path, lambda store: store.add(job)))
    note(f"Uploaded {lines} lines as {uploaded['id']}; job {job.id} is {job.status}.")
    print_json(created) if as_json else _print_jobs([job])


def registration_toml(name: str, provider: str, model: str, rules: list[dict[str, Any]]) -> str:
    """The config that serves a fine-tuned model as `name`, pruned like its training rows."""
    import json

    lines = [
        f"[models.{json.dumps(name)}]",
        f"deployments = [{{ provider = {json.dumps(provider)}, model = {json.dumps(model)} }}]",
    ]
    if rules:
        for rule in rules:
            lines += [
                "",
                "[[pruning.rules]]",
                f"name = {json.dumps(rule['name'])}",
                f"pattern = {json.dumps(rule['pattern'])}",
                f"regex = {'true' if rule.get('regex') else 'false'}",
            ]
        names = ", ".join(json.dumps(rule["name"]) for rule in rules)
        lines += ["", "[pruning.models]", f"{json.dumps(name)} = [{names}]"]
    return "\n".join(lines) + "\n"


@finetune_app.command("status")
def status(
    job_id: Annotated[str, typer.Argument(help="The job's id (from submit).")],
    wait: Annotated[bool, typer.Option(help="Poll until the job ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 10.0,
    timeout: Annotated[
        float, typer.Option(help="Give up waiting after this many seconds.")
    ] = 86400,
    register: Annotated[
        str | None, typer.Option(help="Once succeeded: serve the model as this name.")
    ] = None,
    config_path: ConfigOption = None,
    url: UrlOption = _URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read a job's status from the provider and record it; register its model when done."""
    import asyncio

    from crossroads.finetune.client import TERMINAL, FineTuneError

    job = asyncio.run(_with_store(config_path, lambda store: store.get(job_id)))
    if job is None:
        raise fail(f"No fine-tuning job {job_id!r} was submitted from this gateway.", 1)
    upstream = _upstream(config_path, job.provider)
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = upstream.job(job_id)
        except FineTuneError as exc:
            raise fail(str(exc), 1) from None
        state, model = current.get("status", "unknown"), current.get("fine_tuned_model")

        async def record(store: Any, state: str = state, model: Any = model) -> None:
            await store.update(job_id, status=state, fine_tuned_model=model)

        asyncio.run(_with_store(config_path, record))
        if not wait or state in TERMINAL or time.monotonic() > deadline:
            break
        note(f"{job_id}: {state}", dim=True)
        time.sleep(interval)
    if as_json:
        print_json(current)
    else:
        note(f"{job_id}: {state}" + (f", model {model}" if model else ""))
    if state == "failed":
        error = current.get("error") or {}
        raise fail(f"The job failed: {error.get('message', 'no reason given')}", 1)
    if register is not None:
        if state != "succeeded" or not model:
            raise fail(f"The job is {state}; a model can be registered once it has succeeded.", 1)
        if not register.strip() or "," in register or register != register.strip():
            raise fail("--register needs a model name without commas or surrounding spaces.")
        if register == "router":
            raise fail("--register: 'router' is reserved for learned routing; pick another name.")
        dataset = api(url, api_key, "GET", f"/v1/datasets/{job.dataset_id}")
        rules = dataset.get("pruning") or []

        async def registered(store: Any) -> None:
            await store.register(job_id, register, rules)

        asyncio.run(_with_store(config_path, registered))
        print(registration_toml(register, job.provider, model, rules))
        note(
            f"Registered: the gateway serves {model} as {register!r} from its next start "
            "(the config above does the same; a model the config names wins)."
        )


@finetune_app.command("list")
def list_jobs(config_path: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Jobs submitted from this gateway, oldest first, with their last known status."""
    import asyncio
    import dataclasses

    jobs = asyncio.run(_with_store(config_path, lambda store: store.all()))
    if as_json:
        print_json(
            [
                {
                    **dataclasses.asdict(j),
                    "created_at": j.created_at.isoformat(),
                    "updated_at": j.updated_at.isoformat(),
                }
                for j in jobs
            ]
        )
    else:
        _print_jobs(jobs)
