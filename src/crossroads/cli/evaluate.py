"""`crossroads eval`: run a dataset against models through a running gateway, score it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from crossroads.cli.common import JsonOption, cell, fail, print_json, print_table
from crossroads.cli.gateway_calls import ApiKeyOption, UrlOption, api

__all__ = ["evaluate"]


def _rows(
    url: str, api_key: str | None, dataset_id: str, split: str | None, limit: int | None
) -> Iterator[dict[str, Any]]:
    """The dataset's rows, page by page."""
    after: str | None = None
    seen = 0
    while True:
        params = {"limit": "500"}
        if split:
            params["split"] = split
        if after:
            params["after"] = after
        page = api(url, api_key, "GET", f"/v1/datasets/{dataset_id}/rows", params=params)
        for row in page["data"]:
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield row
        if not page["has_more"]:
            return
        after = page["next_after"]


def _completer(url: str, api_key: str | None) -> Any:
    import orjson

    from crossroads.cli.http import GatewayUnreachable, error_message, request

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def complete(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        try:
            with request(
                "POST",
                f"{url.rstrip('/')}/v1/chat/completions",
                data=orjson.dumps(body),
                headers=headers,
            ) as resp:
                status, payload = resp.status, resp.read()
        except (GatewayUnreachable, OSError) as exc:
            return None, f"unreachable: {exc}"
        if status >= 400:
            return None, f"HTTP {status}: {error_message(payload)}"
        return orjson.loads(payload), None

    return complete


def evaluate(
    dataset_id: Annotated[str, typer.Argument(help="The dataset's id (ds_…).")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="A model to evaluate; repeatable.")
    ],
    split: Annotated[str | None, typer.Option(help="train or test (default: every row).")] = "test",
    scorer: Annotated[
        str | None,
        typer.Option(
            help="exact, normalised or criteria (or one registered); "
            "default: criteria with --criteria, else exact."
        ),
    ] = None,
    criteria: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated criteria from [quality.criteria] for the gateway to judge "
            "every answer on."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sent with every request.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    url: UrlOption = "http://127.0.0.1:8000",
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send every row of a dataset to each model through the gateway; score the answers
    against the rows' outputs, or by the gateway's criteria (--criteria), and print a table
    (or JSON with every row's result)."""
    from crossroads.datasets.evaluation import evaluate as run
    from crossroads.datasets.scoring import SCORERS

    names = [n.strip() for n in (criteria or "").split(",") if n.strip()]
    if criteria is not None and not names:
        raise fail("--criteria needs at least one criterion name, e.g. --criteria concise.")
    scorer = scorer or ("criteria" if names else "exact")
    if scorer not in SCORERS:
        raise fail(f"Unknown scorer {scorer!r}; choose one of {', '.join(SCORERS)}.")
    if scorer == "criteria" and not names:
        raise fail("The criteria scorer needs --criteria NAME[,NAME] to judge answers on.")
    split = None if split in ("", "all") else split
    parameters = {} if temperature is None else {"temperature": temperature}
    results = run(
        _rows(url, api_key, dataset_id, split, limit),
        model,
        _completer(url, api_key),
        SCORERS[scorer],
        parameters=parameters,
        concurrency=concurrency,
        criteria=names,
    )
    summaries = [r.summary() for r in results]
    if as_json:
        print_json(
            {
                "object": "evaluation",
                "dataset_id": dataset_id,
                "split": split,
                "scorer": scorer,
                "criteria": names,
                "models": summaries,
                "rows": [
                    {
                        "row_id": r.row_id,
                        "model": r.model,
                        "score": r.score,
                        "answer": r.answer,
                        "error": r.error,
                        "latency_ms": round(r.latency_ms, 1),
                        "cost": r.cost,
                        **(
                            {"criteria_results": r.criteria, "judge_cost": r.judge_cost}
                            if names
                            else {}
                        ),
                    }
                    for result in results
                    for r in result.rows
                ],
            }
        )
        return
    from rich.table import Table

    table = Table(pad_edge=False)
    columns = ["model", "rows", scorer, "errors", "p50 ms", "cost $"]
    columns += [f"{n} pass/mean" for n in names] + (["judge $"] if names else [])
    for column in columns:
        table.add_column(column, no_wrap=True)
    for s in summaries:
        values = [s[k] for k in ("model", "rows", "score", "errors", "latency_p50_ms", "cost")]
        for n in names:
            per = s["criteria"][n]
            mean = "-" if per["mean_score"] is None else per["mean_score"]
            values.append(f"{per['pass_rate']}/{mean}")
        if names:
            values.append(s["judge_cost"])
        table.add_row(*(cell("" if v is None else str(v)) for v in values))
    print_table(table)
