"""`crossroads router …`: train a quality router from labelled data, and judge one.

Both commands take RouteLLM-layout CSV files or directories and JSON Lines rows (see
`crossroads.learned.data`); `train --from-log` adds the gateway's own rated traffic (see
`crossroads.learned.from_log`). Bad files and artifacts end in one red line naming what to fix
and exit status 2, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crossroads.cli.common import cell, database_url, note, print_table, warning
from crossroads.cli.common import fail as _fail

if TYPE_CHECKING:
    from rich.console import Console

    from crossroads.learned.data import LabelledRow
    from crossroads.learned.decision import ModelPrice
    from crossroads.learned.evaluation import EvalReport

__all__ = ["print_report", "router_app"]

router_app = typer.Typer(
    help="Train and evaluate the learned quality/cost router (model: router).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@router_app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the router (.npz).")],
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="A RouteLLM-layout CSV, a JSONL file of {prompt, model, score} rows, or a "
            "directory of them; repeat for several.",
        ),
    ] = None,
    from_log: Annotated[
        bool,
        typer.Option(
            "--from-log",
            help="Learn from the gateway's rated traffic too: its request log joined with "
            "feedback (POST /v1/feedback), read from the database the config names.",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="With --from-log: only requests from this time on (ISO 8601, UTC)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="With --from-log: the gateway's TOML config, for its database "
            "(default: $CROSSROADS_CONFIG, ./crossroads.toml).",
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated models to learn (default: every model in the data)."),
    ] = None,
) -> None:
    """Learn, per model, how well it answers a prompt, and save the router as one file.

    Rows come from --data files, from the gateway's own rated traffic (--from-log), or both.
    """
    import time

    from rich.table import Table

    from crossroads.learned.data import RouterDataError, read_rows
    from crossroads.learned.predictor import train

    started = time.perf_counter()
    if not data and not from_log:
        raise _fail("nothing to train on: give --data FILE (repeatable), --from-log, or both")
    if since is not None and not from_log:
        raise _fail("--since applies to --from-log only")
    try:
        rows = read_rows(data) if data else []
        if from_log:
            rows += _log_rows(config, _since(since))
        chosen = [m.strip() for m in models.split(",")] if models else None
        router = train(rows, models=chosen)
    except (RouterDataError, OSError) as exc:
        raise _fail(str(exc)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        router.save(out)
    except OSError as exc:
        raise _fail(f"cannot write the router to {out}: {exc.strerror or exc}") from None
    table = Table("model", "rows", "mean score", "completion tokens (median)")
    summary = router.summary
    for model in router.models:
        tokens = router.completion_tokens[model].get("*")
        table.add_row(
            cell(model),
            str(summary["rows_per_model"][model]),
            f"{summary['mean_score'][model]:.3f}",
            "-" if tokens is None else f"{tokens:.0f}",
        )
    print_table(table)
    note(
        f"{summary['prompts']} prompts, {summary['rows']} rows → {out} "
        f"({out.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - started:.1f} s"
    )


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--since {text!r}: expected an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _log_rows(config_path: Path | None, since: datetime | None) -> list[LabelledRow]:
    """Rated traffic from the database the gateway's config names (or the default one)."""
    import asyncio

    from sqlalchemy import exc as sa_exc

    from crossroads.learned.from_log import feedback_rows
    from crossroads.storage.database import create_engine, normalise_url
    from crossroads.storage.log_store import LogStore

    url = database_url(config_path)
    shown = normalise_url(url).render_as_string(hide_password=True)

    async def read() -> list[LabelledRow]:
        store = LogStore(create_engine(url))
        try:
            await store.open()
            return await feedback_rows(store.engine, since=since)
        finally:
            await store.close()

    try:
        rows = asyncio.run(read())
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise _fail(f"cannot read the request log at {shown}: {exc}") from None
    if not rows:
        raise _fail(
            f"no rated requests in the request log at {shown}"
            + (f" since {since.isoformat()}" if since else "")
            + ": rate answers with POST /v1/feedback (requests sent with store: false cannot "
            "be learned from)"
        )
    note(f"{len(rows)} rated requests from the request log at {shown}")
    return rows


def _parse_prices(values: list[str] | None) -> dict[str, ModelPrice]:
    from crossroads.learned.decision import ModelPrice

    prices = {}
    for value in values or ():
        model, _, numbers = value.rpartition("=")
        try:
            given_in, given_out = (float(n) for n in numbers.split(","))
        except ValueError:
            raise _fail(
                f"--price {value!r}: expected MODEL=INPUT,OUTPUT in USD per 1M tokens"
            ) from None
        if not model or given_in < 0 or given_out < 0:
            raise _fail(f"--price {value!r}: expected MODEL=INPUT,OUTPUT in USD per 1M tokens")
        prices[model] = ModelPrice(given_in, given_out)
    return prices


@router_app.command("eval")
def eval_command(
    router: Annotated[Path, typer.Option("--router", help="A router file from `train`.")],
    data: Annotated[
        list[Path],
        typer.Option("--data", help="A directory or file in RouteLLM's CSV layout (or JSONL)."),
    ],
    strong: Annotated[
        str | None, typer.Option(help="The strong model (default: best mean score).")
    ] = None,
    weak: Annotated[
        str | None, typer.Option(help="The weak model (default: worst mean score).")
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(
            help="MODEL=INPUT,OUTPUT (USD per 1M tokens) for the cost curve; repeatable. "
            "Reference prices are built in for the RouteLLM models."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Score a router on labelled data: APGR, CPT(50%), CPT(80%) and the cost/quality curve.

    The router is compared with a random router and the prompt-length baseline on the same
    prompts; the curve shows accuracy and total cost as willingness to pay goes 0 → ∞.
    """
    import orjson

    from crossroads.learned.data import RouterDataError, read_rows, score_table
    from crossroads.learned.evaluation import evaluate_router
    from crossroads.learned.predictor import QualityRouter, RouterArtifactError

    prices = _parse_prices(price)
    try:
        loaded = QualityRouter.load(router)
        table = score_table(read_rows(data))
        report = evaluate_router(loaded, table, strong=strong, weak=weak, prices=prices)
    except (RouterDataError, RouterArtifactError, OSError) as exc:
        raise _fail(str(exc)) from None
    if report.warning is not None:
        warning(f"warning: {report.warning}")
    if as_json:
        print(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(report)


def print_report(report: EvalReport, console: Console | None = None) -> None:
    """The report as two rich tables: router vs baselines, then the cost/quality curve."""
    import math

    from rich.console import Console
    from rich.table import Table

    out = console or Console()
    scores = Table(
        "router",
        "APGR",
        "CPT(50%)",
        "CPT(80%)",
        title=cell(
            f"{report.prompts} prompts · strong {report.strong} "
            f"({report.strong_accuracy:.3f}) · weak {report.weak} ({report.weak_accuracy:.3f})"
        ),
    )
    for name, s in report.routers.items():
        scores.add_row(cell(name), f"{s.apgr:.3f}", f"{s.cpt50:.1%}", f"{s.cpt80:.1%}")
    out.print(scores)
    if not report.wtp:
        out.print(f"[yellow]{cell(report.note)}[/yellow]")
        return
    prices = " · ".join(f"{m} ${p.input:g}/${p.output:g}" for m, p in report.prices.items())
    curve = Table(
        "willingness to pay $",
        "accuracy",
        "total cost $",
        cell(f"{report.strong} share"),
        title=cell(f"cost/quality curve (per 1M tokens in/out: {prices})"),
        caption=cell(report.note),
    )
    for point in report.wtp:
        wtp = "∞" if math.isinf(point.willingness_to_pay) else f"{point.willingness_to_pay:g}"
        curve.add_row(
            wtp,
            f"{point.accuracy:.3f}",
            f"{point.total_cost:.4f}",
            f"{point.share[report.strong]:.1%}",
        )
    out.print(curve)
