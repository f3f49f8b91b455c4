"""`crossroads logs` and `crossroads usage`: the request log, read from its database.

On a terminal `logs` draws a table; piped or redirected it writes tab-separated lines, one
per record under a header line, flushed as they are written, so `logs --follow | grep 429`
shows each record as it arrives. Ids are shown whole: they are what `GET /v1/logs/{id}`
and `POST /v1/feedback` take (their first digits are a timestamp, shared by neighbours).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crossroads.cli.common import (
    ConfigOption,
    JsonOption,
    cell,
    database_url,
    fail,
    print_table,
)

if TYPE_CHECKING:
    from crossroads.storage.log_reader import SqliteLogReader
    from crossroads.storage.log_terms import GroupBy, StatusFilter
    from crossroads.storage.records import LogRecord

__all__ = ["TSV_COLUMNS", "logs", "usage"]

TSV_COLUMNS = (
    "time",
    "id",
    "key",
    "model",
    "provider",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_ms",
    "session",
)


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
    """Show the request log, oldest first (reads the configured database directly).

    On a terminal: a table. Piped or redirected: tab-separated lines (time in ISO 8601 UTC,
    full id, key, model, provider, status, error, prompt and completion tokens, cost USD,
    latency ms, session) under a header line, each flushed as it is written.
    """
    import contextlib

    from crossroads.storage.log_terms import parse_status_filter

    try:
        parsed_status = parse_status_filter(status)
    except ValueError as exc:
        raise fail(f"--status: {exc}") from None
    printer = _TablePrinter() if sys.stdout.isatty() else _TsvPrinter()
    # Ctrl-C ends the command, --follow's included, as soon as it is pressed.
    with contextlib.suppress(KeyboardInterrupt):
        reader = _open_reader(database_url(config))
        try:
            _print_logs(reader, printer, limit, model, parsed_status, session, follow)
        finally:
            reader.close()


def _print_logs(
    reader: SqliteLogReader | _LogStoreReader,
    printer: _TablePrinter | _TsvPrinter,
    limit: int,
    model: str | None,
    status: StatusFilter | None,
    session: str | None,
    follow: bool,
) -> None:
    import time

    records = reader.query(model=model, status=status, session_id=session, limit=limit)
    printer.print(list(reversed(records)), header=True)
    seen = {r.id for r in records}
    since = max((r.created_at for r in records), default=datetime.now(UTC))
    while follow:
        time.sleep(1.0)
        fresh = reader.query(
            start=since, model=model, status=status, session_id=session, limit=1000
        )
        fresh = [r for r in reversed(fresh) if r.id not in seen]
        if fresh:
            printer.print(fresh, header=False)
            seen.update(r.id for r in fresh)
            since = max(since, *(r.created_at for r in fresh))


def _open_reader(url: str) -> SqliteLogReader | _LogStoreReader:
    """A SQLite file at the newest revision is read with the standard library, without
    loading SQLAlchemy (see `crossroads.storage.log_reader`): most of these commands'
    start-up time. Anything else is opened with `LogStore`, which creates or migrates the
    database; SQLite is then read with the standard library too."""
    from crossroads.storage.log_reader import SqliteLogReader

    reader = SqliteLogReader.open(url)
    if reader is not None:
        return reader
    store = _LogStoreReader(url)
    if store.dialect == "sqlite" and (reader := SqliteLogReader.open(url)) is not None:
        store.close()
        return reader
    return store


class _LogStoreReader:
    """`LogStore` (and `usage_totals`) behind `SqliteLogReader`'s blocking methods, every
    call run on one event loop: PostgreSQL, and a SQLite database to create or migrate."""

    def __init__(self, url: str) -> None:
        import asyncio

        from crossroads.storage.database import create_engine
        from crossroads.storage.log_store import LogStore

        self._runner = asyncio.Runner()
        self._store = LogStore(create_engine(url))
        try:
            self._runner.run(self._store.open())
        except BaseException:
            self.close()
            raise

    @property
    def dialect(self) -> str:
        return self._store.engine.dialect.name

    def query(self, **filters: Any) -> list[LogRecord]:
        return self._runner.run(self._store.query(**filters))

    def usage(
        self, *, group_by: GroupBy, start: datetime | None, end: datetime | None
    ) -> list[dict[str, Any]]:
        from crossroads.storage.usage_store import usage_totals

        totals = usage_totals(self._store.engine, group_by=group_by, start=start, end=end)
        return self._runner.run(totals)

    def close(self) -> None:
        try:
            self._runner.run(self._store.close())
        finally:
            self._runner.close()


class _TsvPrinter:
    """Records as tab-separated lines for pipes and files, each flushed at once."""

    def print(self, records: list[LogRecord], header: bool) -> None:
        if header:
            self._line(TSV_COLUMNS)
        for r in records:
            self._line(
                (
                    r.created_at.astimezone(UTC).isoformat(timespec="milliseconds"),
                    r.id,
                    r.key_id,
                    r.model_requested,
                    r.provider,
                    r.status_code,
                    r.error_code,
                    r.prompt_tokens,
                    r.completion_tokens,
                    None if r.cost is None else f"{r.cost:.6f}",
                    None if r.latency_ms is None else f"{r.latency_ms:.0f}",
                    r.session_id,
                )
            )

    @staticmethod
    def _line(values: tuple[object, ...]) -> None:
        fields = ("" if v is None else " ".join(str(v).split()) for v in values)
        sys.stdout.write("\t".join(fields) + "\n")
        sys.stdout.flush()


class _TablePrinter:
    """Records as a table for a terminal; a --follow batch is a table without a header."""

    def print(self, records: list[LogRecord], header: bool) -> None:
        from rich.table import Table

        table = Table(show_header=header, pad_edge=False)
        for column in ("time", "id", "key", "model", "provider", "status"):
            # The id is never cut short: it is what /v1/logs/{id} and feedback take.
            table.add_column(column, no_wrap=True, min_width=32 if column == "id" else None)
        for column in ("tokens", "cost $", "ms", "session"):
            table.add_column(column, no_wrap=True)
        for r in records:
            tokens = (
                f"{r.prompt_tokens}+{r.completion_tokens}" if r.prompt_tokens is not None else ""
            )
            table.add_row(
                r.created_at.astimezone().strftime("%H:%M:%S"),
                r.id,
                cell(r.key_id or "-"),
                cell(r.model_requested),
                cell(r.provider or "-"),
                str(r.status_code) + (f" {cell(r.error_code)}" if r.error_code else ""),
                tokens,
                f"{r.cost:.6f}" if r.cost is not None else "",
                f"{r.latency_ms:.0f}" if r.latency_ms is not None else "",
                cell(r.session_id or ""),
                style="red" if r.status_code >= 400 else None,
            )
        print_table(table)


def usage(
    config: ConfigOption = None,
    group_by: Annotated[
        str, typer.Option("--group-by", help="day, model, key or provider.")
    ] = "day",
    start: Annotated[str | None, typer.Option(help="From (ISO 8601 date or time, UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Until, exclusive (ISO 8601, UTC).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Usage and cost summed from the request log (reads the configured database directly)."""
    from crossroads.cli.common import print_json
    from crossroads.storage.log_terms import GROUPS

    if group_by not in GROUPS:
        raise fail(f"--group-by must be one of {', '.join(GROUPS)}")
    try:
        since, until = (_utc(datetime.fromisoformat(t)) if t else None for t in (start, end))
    except ValueError as exc:
        raise fail(f"--start/--end: {exc}") from None
    reader = _open_reader(database_url(config))
    try:
        rows = reader.usage(group_by=group_by, start=since, end=until)
    finally:
        reader.close()
    if as_json:
        print_json(rows)
        return
    _print_usage(rows, group_by)


def _print_usage(rows: list[dict[str, Any]], group_by: str) -> None:
    from rich.table import Table

    table = Table(group_by, "requests", "errors", "prompt", "completion", "cached", "cost USD")
    for row in rows:
        table.add_row(
            cell(row[group_by]),
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
    print_table(table)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
