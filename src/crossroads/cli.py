"""The `crossroads` command line. Each command's docstring is its help text."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crossroads.config import Config, ConfigError, default_config, find_config_file, load_config
from crossroads.learned.cli import router_app
from crossroads.providers.capabilities import Capabilities
from crossroads.server.auth import MASTER_KEY_ENV, is_loopback, loopback_only, master_key_from_env
from crossroads.storage.log_store import StatusFilter, parse_status_filter
from crossroads.storage.records import LogRecord

__all__ = ["app", "main"]

app = typer.Typer(
    help="Crossroads: a self-hosted, OpenAI-compatible LLM gateway and router.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and validate configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
providers_app = typer.Typer(
    help="Provider presets, dialects and their capability matrices.", no_args_is_help=True
)
app.add_typer(providers_app, name="providers")
keys_app = typer.Typer(
    help=f"Virtual keys, through a running gateway's admin API (needs ${MASTER_KEY_ENV}).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
app.add_typer(router_app, name="router")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $CROSSROADS_CONFIG, ./crossroads.toml)."
    ),
]

_err = Console(stderr=True)


def _load(config_path: Path | None) -> tuple[Config | None, Path | None]:
    path = find_config_file(config_path)
    if path is None:
        return None, None
    try:
        return load_config(path), path
    except ConfigError as exc:
        _err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8000).")] = None,
) -> None:
    """Run the gateway.

    Without a config file it serves the model `local` — Gemma 3 270M on the embedded
    llama.cpp engine, no network or key needed — on 127.0.0.1:8000.
    """
    loaded, _ = _load(config)
    if loaded is None:
        try:
            loaded = default_config()
        except ConfigError as exc:  # the `local` extra is not installed
            _err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
            raise typer.Exit(2) from None
        _err.print(
            "No config file: serving model 'local', Gemma 3 270M on the embedded llama.cpp "
            "engine (a tiny base model: good for trying features, not for good answers)."
        )
    _run(loaded, host, port)


def _run(config: Config, host: str | None, port: int | None) -> None:
    import uvicorn

    from crossroads.server import create_app

    logging.basicConfig(format="%(levelname)s:     %(message)s")
    logging.getLogger("crossroads").setLevel(logging.INFO)
    try:
        warnings = _check_router(config)
    except ValueError as exc:
        _err.print(f"[red]Cannot serve: router: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    for warning in warnings:
        _err.print(f"[yellow]router: {escape(warning)}[/yellow]")
    bind_host = host or config.server.host
    bind_port = config.server.port if port is None else port
    open_to_loopback = loopback_only(config.keys, master_key_from_env())
    if open_to_loopback and not is_loopback(bind_host):
        _err.print(
            f"[red]Refusing to bind {bind_host}: no API keys are configured, so the gateway "
            "would be open to anyone who can reach it. Add [[keys]] to the config, set "
            f"{MASTER_KEY_ENV} to use virtual keys, or bind 127.0.0.1.[/red]"
        )
        raise typer.Exit(2)
    _err.print(
        f"Crossroads on http://{bind_host}:{bind_port}/v1 — models: "
        + (", ".join(config.models) or "none")
        + (" — no keys configured: loopback clients only" if open_to_loopback else "")
    )
    app = create_app(config)
    # Everything imported so far lives as long as the process: moved out of the collector's
    # view, the full collections that per-request garbage triggers have far less to walk.
    gc.collect()
    gc.freeze()
    # A young generation of 10,000 objects instead of 700. Log records wait up to a flush
    # interval for the writer, so at the default they survived into the old generation by
    # the thousand and set off a full collection (about 30 ms) every ~1,400 requests: the
    # collector took a fifth of the CPU under load. Measured at c64 against the mock
    # upstream: 170 -> 150 us of CPU per request, full collections from 25 to about 1 per
    # 40k requests; a young collection now pauses about 2 ms every few hundred requests.
    gc.set_threshold(10_000, 10, 10)
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=config.server.access_log,
        log_level="info",
        timeout_graceful_shutdown=30,
    )


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")] = "local",
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = False,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Longest answer in tokens.")] = 512,
    url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[
        str | None, typer.Option(envvar="CROSSROADS_API_KEY", help="Bearer key for the gateway.")
    ] = None,
) -> None:
    """Send one chat message to a running gateway and print the answer."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream_options"] = {"include_usage": True}
    code = asyncio.run(_chat(url.rstrip("/"), api_key, body))
    raise typer.Exit(code)


async def _chat(url: str, api_key: str | None, body: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    out = Console()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/chat/completions", data=orjson.dumps(body), headers=headers
            ) as resp,
        ):
            if resp.status >= 400:
                message = _error_message(await resp.read())
                _err.print(f"[red]HTTP {resp.status}: {escape(message)}[/red]")
                return 1
            if not body["stream"]:
                result = orjson.loads(await resp.read())
                out.print(result["choices"][0]["message"].get("content") or "", markup=False)
                _print_usage(result.get("usage"), result.get("provider"))
                return 0
            usage = provider = None
            async for line in resp.content:
                if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    _err.print(f"\n[red]stream failed: {chunk['error']['message']}[/red]")
                    return 1
                for choice in chunk.get("choices") or ():
                    sys.stdout.write((choice.get("delta") or {}).get("content") or "")
                    sys.stdout.flush()
                usage, provider = chunk.get("usage") or usage, chunk.get("provider") or provider
            sys.stdout.write("\n")
            _print_usage(usage, provider)
            return 0
    except aiohttp.ClientError as exc:
        _err.print(f"[red]Cannot reach the gateway at {url}: {exc}[/red]")
        return 1


def _error_message(payload: bytes) -> str:
    """The message of an error envelope, or the body as text when it is not one."""
    try:
        return str(orjson.loads(payload)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return payload.decode(errors="replace")


def _print_usage(usage: dict[str, Any] | None, provider: str | None) -> None:
    if usage:
        _err.print(
            f"[dim]{provider or '?'} · "
            f"{usage.get('prompt_tokens')}+{usage.get('completion_tokens')} tokens · "
            f"${usage.get('cost', 0):.6f} · {usage.get('latency_ms', 0):.0f} ms[/dim]"
        )


@app.command()
def logs(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many recent records.")] = 20,
    model: Annotated[str | None, typer.Option(help="Only this requested model.")] = None,
    status: Annotated[str | None, typer.Option(help="'ok', 'error' or an HTTP status.")] = None,
    session: Annotated[str | None, typer.Option(help="Only this session_id.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records.")
    ] = False,
) -> None:
    """Show the request log as a table (reads the configured database directly)."""
    loaded, _ = _load(config)
    url = (loaded.storage.database_url if loaded else None) or None
    try:
        parsed_status = parse_status_filter(status)
    except ValueError as exc:
        _err.print(f"[red]--status: {exc}[/red]")
        raise typer.Exit(2) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_logs(url, limit, model, parsed_status, session, follow))


async def _logs(
    url: str | None,
    limit: int,
    model: str | None,
    status: StatusFilter | None,
    session: str | None,
    follow: bool,
) -> None:
    from crossroads.storage.database import create_engine, default_database_url
    from crossroads.storage.log_store import LogStore

    store = LogStore(create_engine(url or default_database_url()))
    await store.open()
    out = Console()
    # Ctrl-C ends --follow between two polls rather than cancelling a query in flight: a
    # database call cancelled half-way could leave the connection's worker thread waiting
    # and the process unable to exit.
    stop = asyncio.Event()
    if follow:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    try:
        records = await store.query(model=model, status=status, session_id=session, limit=limit)
        out.print(_log_table(list(reversed(records))))
        seen = {r.id for r in records}
        since = max((r.created_at for r in records), default=datetime.now(UTC))
        while follow and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if stop.is_set():
                break
            fresh = await store.query(
                start=since, model=model, status=status, session_id=session, limit=1000
            )
            fresh = [r for r in reversed(fresh) if r.id not in seen]
            if fresh:
                out.print(_log_table(fresh, header=False))
                seen.update(r.id for r in fresh)
                since = max(since, *(r.created_at for r in fresh))
    finally:
        await store.close()


@app.command()
def usage(
    config: ConfigOption = None,
    group_by: Annotated[
        str, typer.Option("--group-by", help="day, model, key or provider.")
    ] = "day",
    start: Annotated[str | None, typer.Option(help="From (ISO 8601 date or time, UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Until, exclusive (ISO 8601, UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Usage and cost summed from the request log (reads the configured database directly)."""
    from crossroads.storage.usage_store import GROUPS

    if group_by not in GROUPS:
        _err.print(f"[red]--group-by must be one of {', '.join(GROUPS)}[/red]")
        raise typer.Exit(2)
    try:
        since, until = (_utc(datetime.fromisoformat(t)) if t else None for t in (start, end))
    except ValueError as exc:
        _err.print(f"[red]--start/--end: {exc}[/red]")
        raise typer.Exit(2) from None
    loaded, _ = _load(config)
    url = (loaded.storage.database_url if loaded else None) or None
    rows = asyncio.run(_usage(url, group_by, since, until))
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(group_by, "requests", "errors", "prompt", "completion", "cached", "cost USD")
    for row in rows:
        table.add_row(
            str(row[group_by]),
            str(row["requests"]),
            str(row["errors"]),
            str(row["prompt_tokens"]),
            str(row["completion_tokens"]),
            str(row["cached_tokens"]),
            f"{row['cost']:.6f}",
        )
    table.add_row(
        "total",
        str(sum(r["requests"] for r in rows)),
        str(sum(r["errors"] for r in rows)),
        str(sum(r["prompt_tokens"] for r in rows)),
        str(sum(r["completion_tokens"] for r in rows)),
        str(sum(r["cached_tokens"] for r in rows)),
        f"{sum(r['cost'] for r in rows):.6f}",
        style="bold",
    )
    Console().print(table)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def _usage(
    url: str | None, group_by: str, start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    from crossroads.storage.database import create_engine, default_database_url
    from crossroads.storage.log_store import LogStore
    from crossroads.storage.usage_store import usage_totals

    store = LogStore(create_engine(url or default_database_url()))
    await store.open()
    try:
        return await usage_totals(store.engine, group_by=group_by, start=start, end=end)  # type: ignore[arg-type]
    finally:
        await store.close()


def _log_table(records: list[LogRecord], header: bool = True) -> Table:
    table = Table(show_header=header, pad_edge=False)
    for column in (
        "time",
        "id",
        "key",
        "model",
        "provider",
        "status",
        "tokens",
        "cost $",
        "ms",
        "session",
    ):
        table.add_column(column, no_wrap=True)
    for r in records:
        style = "red" if r.status_code >= 400 else None
        tokens = f"{r.prompt_tokens}+{r.completion_tokens}" if r.prompt_tokens is not None else ""
        table.add_row(
            r.created_at.astimezone().strftime("%H:%M:%S"),
            r.id[:8],
            r.key_id or "-",
            r.model_requested,
            r.provider or "-",
            str(r.status_code) + (f" {r.error_code}" if r.error_code else ""),
            tokens,
            f"{r.cost:.6f}" if r.cost is not None else "",
            f"{r.latency_ms:.0f}" if r.latency_ms is not None else "",
            r.session_id or "",
            style=style,
        )
    return table


def _known_providers() -> dict[str, tuple[str, str, str, Capabilities]]:
    """name → (how to configure it, base URL, key variable, capabilities)."""
    from crossroads.providers.registry import listings

    return {r.name: (r.configure, r.base_url, r.key_env, r.capabilities) for r in listings()}


@providers_app.command("list")
def providers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List provider presets and dialects: how to configure each, its URL and key variable.

    A preset is an OpenAI-compatible provider that needs only a name and a key:

        [providers.groq]
        preset = "groq"
        api_key = "env:GROQ_API_KEY"
    """
    known = _known_providers()
    if as_json:
        rows = {
            name: {"configure": how, "base_url": url, "key_env": key or None, "notes": c.notes}
            for name, (how, url, key, c) in known.items()
        }
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table("name", "configure with", "base URL", "key variable", "notes")
    for column in table.columns[:4]:
        column.no_wrap = True
    for name, (how, url, key, capabilities) in known.items():
        table.add_row(name, how, url, key, capabilities.notes)
    Console().print(table)


@providers_app.command("matrix")
def providers_matrix(
    names: Annotated[
        list[str] | None, typer.Argument(help="Presets or dialects to show (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show which request parameters each provider supports: native, translated or unsupported.

    Unsupported parameters are dropped and listed in the response's `dropped_params`, unless
    the request sets `provider.require_parameters: true`.
    """
    from crossroads.providers.capabilities import MATRIX_PARAMETERS

    known = _known_providers()
    chosen = names or list(known)
    if unknown := [n for n in chosen if n not in known]:
        _err.print(f"[red]unknown provider {unknown[0]!r} (known: {', '.join(known)})[/red]")
        raise typer.Exit(2)
    matrix = {name: {p: known[name][3].support(p) for p in MATRIX_PARAMETERS} for name in chosen}
    if as_json:
        print(orjson.dumps(matrix, option=orjson.OPT_INDENT_2).decode())
        return
    marks = {"native": "[green]native[/green]", "translated": "[cyan]transl.[/cyan]"}
    table = Table("parameter", *chosen)
    for parameter in MATRIX_PARAMETERS:
        cells = [marks.get(matrix[n][parameter], "[dim]—[/dim]") for n in chosen]
        table.add_row(parameter, *cells)
    table.add_row("(other)", *(known[n][3].unknown for n in chosen))
    Console().print(table)


def _check_router(config: Config) -> list[str]:
    """Load the router artifact and map the configured models onto it, as serving will.

    Raises `ValueError` for what would fail; returns warnings for what would never route.
    """
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


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the config file without serving; exit status 2 names what is wrong."""
    loaded, path = _load(config)
    if loaded is None:
        _err.print(
            "No config file given or found (--config, $CROSSROADS_CONFIG, ./crossroads.toml); "
            "`crossroads serve` would use the built-in demo."
        )
        raise typer.Exit(1)
    try:
        warnings = _check_router(loaded)
    except ValueError as exc:  # RouterArtifactError: unreadable artifact or a missing profile
        _err.print(f"[red]{path}: router: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    for warning in warnings:
        _err.print(f"[yellow]{path}: router: {escape(warning)}[/yellow]")
    deployments = sum(len(m.deployments) for m in loaded.models.values())
    typer.echo(
        f"{path}: OK — {len(loaded.providers)} provider(s), {len(loaded.models)} model(s), "
        f"{deployments} deployment(s), {len(loaded.keys)} key(s)"
    )


# --- virtual keys ---------------------------------------------------------------------------

UrlOption = Annotated[str, typer.Option(help="Gateway base URL (the admin API is under /admin).")]
MasterKeyOption = Annotated[
    str | None,
    typer.Option(envvar=MASTER_KEY_ENV, help="The gateway's master key.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameOption = Annotated[str | None, typer.Option(help="A name to tell the key by.")]
TeamOption = Annotated[str | None, typer.Option(help="The team or owner it belongs to.")]
ModelsOption = Annotated[
    str | None, typer.Option(help="Comma-separated models it may use (default: all).")
]
BudgetOption = Annotated[float | None, typer.Option(help="Budget in USD.")]
PeriodOption = Annotated[
    str | None, typer.Option(help="Budget reset period: daily, weekly or monthly.")
]
RpmOption = Annotated[int | None, typer.Option(help="Requests per minute.")]
TpmOption = Annotated[int | None, typer.Option(help="Tokens per minute.")]
ParallelOption = Annotated[int | None, typer.Option(help="Requests in flight at once.")]
ExpiresOption = Annotated[
    str | None,
    typer.Option(help="Expiry: an ISO 8601 time, or a duration from now such as 30d, 12h, 2w."),
]
MetadataOption = Annotated[
    str | None, typer.Option(help='A JSON object, e.g. \'{"env": "prod"}\'.')
]

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _expiry(text: str) -> str:
    """ISO 8601 for the server; a duration (`30d`) counts from now."""
    if match := _DURATION.match(text.strip()):
        delta = timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})
        return (datetime.now(UTC) + delta).isoformat()
    return text


def _key_settings(
    name: str | None,
    team: str | None,
    models: str | None,
    max_budget: float | None,
    budget_period: str | None,
    rpm_limit: int | None,
    tpm_limit: int | None,
    max_parallel_requests: int | None,
    expires_at: str | None,
    metadata: str | None,
) -> dict[str, Any]:
    """The options given, as admin API fields; the gateway validates their values."""
    settings: dict[str, Any] = {
        "name": name,
        "team": team,
        "models": None if models is None else [m.strip() for m in models.split(",")],
        "max_budget": max_budget,
        "budget_period": budget_period,
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "max_parallel_requests": max_parallel_requests,
        "expires_at": None if expires_at is None else _expiry(expires_at),
    }
    if metadata is not None:
        try:
            settings["metadata"] = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            _err.print(f"[red]--metadata is not JSON: {exc}[/red]")
            raise typer.Exit(2) from None
    return {field: value for field, value in settings.items() if value is not None}


def _admin_call(
    url: str,
    master_key: str | None,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """Call the admin API; print its error and exit 1 when it refuses."""
    if not master_key:
        _err.print(f"[red]No master key: set {MASTER_KEY_ENV} or pass --master-key.[/red]")
        raise typer.Exit(2)

    async def call() -> tuple[int, bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{url.rstrip('/')}{path}",
                data=None if body is None else orjson.dumps(body),
                params=params,
                headers={
                    "Authorization": f"Bearer {master_key}",
                    "Content-Type": "application/json",
                },
            ) as resp,
        ):
            return resp.status, await resp.read()

    try:
        status, payload = asyncio.run(call())
    except aiohttp.ClientError as exc:
        _err.print(f"[red]Cannot reach the gateway at {url}: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    if status >= 400:
        _err.print(f"[red]HTTP {status}: {escape(_error_message(payload))}[/red]")
        raise typer.Exit(1)
    return orjson.loads(payload)


def _print_keys(keys: list[dict[str, Any]]) -> None:
    table = Table(pad_edge=False)
    for column in ("id", "name", "team", "status", "models", "budget $", "rpm", "tpm"):
        table.add_column(column, no_wrap=column != "models")
    for column in ("parallel", "expires", "key"):
        table.add_column(column, no_wrap=True)
    for k in keys:
        budget = "" if k["max_budget"] is None else f"{k['max_budget']:g}"
        if budget and k["budget_period"]:
            budget += f"/{k['budget_period']}"
        table.add_row(
            k["id"],
            k["name"] or "",
            k["team"] or "",
            k["status"],
            "all" if k["models"] is None else ", ".join(k["models"]),
            budget,
            *("" if k[f] is None else str(k[f]) for f in ("rpm_limit", "tpm_limit")),
            "" if k["max_parallel_requests"] is None else str(k["max_parallel_requests"]),
            (k["expires_at"] or "")[:19],
            k["key_prefix"],
            style="dim" if k["status"] != "active" else None,
        )
    Console().print(table)


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@keys_app.command("create")
def keys_create(
    name: NameOption = None,
    team: TeamOption = None,
    models: ModelsOption = None,
    max_budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    rpm_limit: RpmOption = None,
    tpm_limit: TpmOption = None,
    max_parallel_requests: ParallelOption = None,
    expires_at: ExpiresOption = None,
    metadata: MetadataOption = None,
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a virtual key and print its secret — the only time it is shown."""
    settings = _key_settings(
        name,
        team,
        models,
        max_budget,
        budget_period,
        rpm_limit,
        tpm_limit,
        max_parallel_requests,
        expires_at,
        metadata,
    )
    created = _admin_call(url, master_key, "POST", "/admin/keys", body=settings)
    if as_json:
        _print_json(created)
        return
    _print_keys([created])
    print(created["key"])
    _err.print("[yellow]The key above is shown only now: store it somewhere safe.[/yellow]")


@keys_app.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    include_revoked: Annotated[
        bool, typer.Option("--all", "-a", help="Include revoked keys.")
    ] = False,
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List virtual keys, oldest first (their secrets are never shown again)."""
    params = {"include_revoked": "true" if include_revoked else "false"}
    if team is not None:
        params["team"] = team
    listing = _admin_call(url, master_key, "GET", "/admin/keys", params=params)
    if as_json:
        _print_json(listing["data"])
    else:
        _print_keys(listing["data"])


@keys_app.command("update")
def keys_update(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    name: NameOption = None,
    team: TeamOption = None,
    models: ModelsOption = None,
    max_budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    rpm_limit: RpmOption = None,
    tpm_limit: TpmOption = None,
    max_parallel_requests: ParallelOption = None,
    expires_at: ExpiresOption = None,
    metadata: MetadataOption = None,
    unset: Annotated[
        list[str] | None,
        typer.Option(help="Clear a field (no limit, all models, no expiry); repeatable."),
    ] = None,
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change some of a key's settings; the others stay as they are."""
    changes = _key_settings(
        name,
        team,
        models,
        max_budget,
        budget_period,
        rpm_limit,
        tpm_limit,
        max_parallel_requests,
        expires_at,
        metadata,
    )
    changes |= {field.strip(): None for field in unset or ()}
    if not changes:
        _err.print("[red]Nothing to update: give at least one option.[/red]")
        raise typer.Exit(2)
    updated = _admin_call(url, master_key, "PATCH", f"/admin/keys/{key_id}", body=changes)
    if as_json:
        _print_json(updated)
    else:
        _print_keys([updated])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key for good. Every replica refuses it within a few seconds, this one at once."""
    revoked = _admin_call(url, master_key, "DELETE", f"/admin/keys/{key_id}")
    if as_json:
        _print_json(revoked)
    else:
        _print_keys([revoked])


def main() -> None:
    app()
