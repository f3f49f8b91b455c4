"""Compile the request log's read statements for SQLite ahead of time (`log_reader_sql`).

`crossroads logs` and `usage` start a process per call, and importing SQLAlchemy costs
more than everything else they do. So the statements the server builds (`records_query`,
`log_conditions`, `usage_query`) are compiled here, once, into plain SQL text that the
command line's reader runs on the standard library's `sqlite3`. A test regenerates the
module and fails when it differs from the one in the tree, so a change to a statement
builder cannot leave the reader running yesterday's SQL:

    python -m crossroads.storage.log_reader_compile      # rewrites log_reader_sql.py

Bind parameters are found by value: each filter is compiled with a sentinel value, the
parameter holding it is renamed after the filter, and any other parameter (a constant such
as `status < 400`) is written into the SQL as a literal.
"""

from __future__ import annotations

import dataclasses
import pprint
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from crossroads.storage.log_store import log_conditions, records_query
from crossroads.storage.log_terms import GROUPS, StatusFilter
from crossroads.storage.records import LogRecord
from crossroads.storage.schema import UTCDateTime, request_log
from crossroads.storage.usage_store import usage_query

__all__ = ["TARGET", "render"]

TARGET = Path(__file__).with_name("log_reader_sql.py")

_DIALECT = sqlite.dialect(paramstyle="named")
_TIME = datetime(2001, 2, 3, 4, 5, 6, 789, tzinfo=UTC)
_LIMIT = 987_654_321
# One sentinel per filter the reader serves; each must reach its parameter unchanged.
_SENTINELS: dict[str, Any] = {
    "start": _TIME,
    "end": _TIME,
    "model": "sentinel-model",
    "session_id": "sentinel-session",
    "user": "sentinel-user",
    "key_id": "sentinel-key",
    "status": 499,
}
# "status" also takes two words, each a condition without a parameter of the caller's.
_STATUS_WORDS: tuple[StatusFilter, ...] = ("ok", "error")


def _sql(statement: sa.ClauseElement, sentinels: dict[str, Any]) -> str:
    """`statement` as SQLite text, its parameters named after the filters in `sentinels`."""
    compiled = statement.compile(dialect=_DIALECT)
    text = str(compiled)
    for name, value in compiled.params.items():
        owner = [f for f, sentinel in sentinels.items() if sentinel == value]
        if owner:
            replacement = f":{owner[0]}"
        elif isinstance(value, int) and not isinstance(value, bool):
            replacement = str(value)
        else:
            raise ValueError(f"parameter {name}={value!r} is neither a filter nor a number")
        text, count = re.subn(rf":{re.escape(name)}\b", replacement, text)
        if not count:  # a repeated expression (GROUP BY the selected group) repeats it
            raise ValueError(f"parameter {name} is missing from {text!r}")
    return " ".join(text.split())


def _conditions() -> dict[str, str]:
    conditions = {}
    for name, sentinel in _SENTINELS.items():
        (condition,) = log_conditions("sqlite", **{name: sentinel})
        conditions[name] = _sql(condition, {name: sentinel})
    for word in _STATUS_WORDS:
        (condition,) = log_conditions("sqlite", status=word)
        conditions[f"status={word}"] = _sql(condition, {})
    return conditions


def _records() -> tuple[str, str]:
    """The records statement without conditions, cut where they go (before ORDER BY)."""
    text = _sql(records_query("sqlite", _LIMIT), {"limit": _LIMIT})
    head, order, tail = text.partition(" ORDER BY ")
    if not order or " WHERE " in head:
        raise ValueError(f"unexpected shape of the records statement: {text!r}")
    return head, order.lstrip() + tail


def _usage(conditions: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Per group, the usage statement without conditions, cut where they go (before GROUP
    BY). The conditions are the records statement's; each combination of bounds is checked
    to be exactly what `usage_query` builds."""
    statements: dict[str, tuple[str, str]] = {}
    for group in GROUPS:
        head, grouped, tail = _sql(usage_query("sqlite", group_by=group), {}).partition(
            " GROUP BY "
        )
        if not grouped or " WHERE " in head:
            raise ValueError(f"unexpected shape of the usage statement for {group}")
        statements[group] = (head, grouped.lstrip() + tail)
        for bounds in (("start",), ("end",), ("start", "end")):
            # Two different times, so each parameter is named after its own bound.
            sentinels = {name: _TIME.replace(year=2001 + i) for i, name in enumerate(bounds)}
            statement = usage_query(
                "sqlite", group_by=group, start=sentinels.get("start"), end=sentinels.get("end")
            )
            built = _sql(statement, sentinels)
            where = " AND ".join(conditions[name] for name in bounds)
            if built != f"{head} WHERE {where} {statements[group][1]}":
                raise ValueError(f"usage by {group} with {bounds} is not its parts: {built!r}")
    return statements


def _kinds() -> tuple[tuple[str, str], ...]:
    """How each selected column's value becomes the record's field."""
    kinds = []
    for field in dataclasses.fields(LogRecord):
        column_type = request_log.c[field.name].type
        if isinstance(column_type, UTCDateTime):
            kind = "time"
        elif isinstance(column_type, sa.JSON):
            kind = "json"
        elif isinstance(column_type, sa.Boolean):
            kind = "bool"
        elif isinstance(column_type, sa.Integer | sa.Float | sa.Text):
            kind = "value"
        else:
            raise ValueError(f"no reading for column {field.name} of type {column_type!r}")
        kinds.append((field.name, kind))
    return tuple(kinds)


def render() -> str:
    """The text of `log_reader_sql.py` for the statement builders as they are now."""
    head, tail = _records()
    conditions = _conditions()
    parts = {
        "RECORD_COLUMNS": _kinds(),
        "RECORDS_HEAD": head,
        "RECORDS_TAIL": tail,
        "CONDITIONS": conditions,
        "USAGE": _usage(conditions),
    }
    body = "\n\n".join(
        f"{name} = {pprint.pformat(value, width=88, sort_dicts=False)}"
        for name, value in parts.items()
    )
    return (
        '"""The request log\'s read statements compiled for SQLite: generated by\n'
        "`python -m crossroads.storage.log_reader_compile` from the statement builders, for\n"
        '`log_reader`. Do not edit: a test fails when this differs from a fresh compile."""\n\n'
        "# fmt: off\n"
        f"{body}\n"
    )


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
