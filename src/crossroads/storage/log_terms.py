"""What a question to the request log may ask, and how its answers read: no SQL here.

Filters, page sizes, usage groups, the stored form of a time on SQLite and a usage row:
shared by the statements `log_store` and `usage_store` build with SQLAlchemy for the server
and by the command line's SQLite reader (`log_reader`), which runs those statements
compiled ahead of time and must not import SQLAlchemy (a third of its start-up time).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from crossroads.storage.storable import indexed_text, storable_text

__all__ = [
    "GROUPS",
    "MAX_FILTER_KEY",
    "MAX_LIMIT",
    "GroupBy",
    "StatusFilter",
    "check_filter_key",
    "check_limit",
    "filter_text",
    "parse_status_filter",
    "sqlite_time",
    "usage_row",
]

MAX_LIMIT = 1000
MAX_FILTER_KEY = 256  # characters in a metadata.KEY or extra.KEY filter's key

StatusFilter = int | Literal["ok", "error"]

GroupBy = Literal["day", "model", "key", "provider"]
GROUPS: tuple[GroupBy, ...] = ("day", "model", "key", "provider")

# Filters on indexed text columns: the stored value was cut to `MAX_INDEXED_TEXT`
# characters, so the filter value is cut alike to find it.
_INDEXED_FILTERS = frozenset({"model", "session_id", "key_id"})


def parse_status_filter(text: str | None) -> StatusFilter | None:
    """'ok', 'error' or an HTTP status code, as typed in a URL or on the command line."""
    if not text:
        return None
    if text == "ok":
        return "ok"
    if text == "error":
        return "error"
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text)
    raise ValueError(f"status must be 'ok', 'error' or an HTTP status code, got {text!r}")


def check_limit(limit: int) -> None:
    """Raise ValueError for a page size a log query does not serve."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")


def check_filter_key(key: str) -> None:
    """Raise ValueError for a JSON key no backend can filter on alike."""
    if not key or len(key) > MAX_FILTER_KEY:
        raise ValueError(f"keys must be 1 to {MAX_FILTER_KEY} characters long")
    if '"' in key or "\\" in key or not key.isprintable():
        raise ValueError("keys cannot hold quotes, backslashes or control characters")


def filter_text(name: str, value: str) -> str:
    """A text filter's value as the column it compares with stores it: a NUL matches the
    U+FFFD that replaced it, and an indexed column's value is cut as it was when stored."""
    return indexed_text(value) if name in _INDEXED_FILTERS else storable_text(value)


def sqlite_time(moment: datetime) -> str:
    """A time as the request log stores it on SQLite: naive UTC text in SQLAlchemy's format,
    so text order is time order (naive datetimes are taken to be UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # isoformat, not strftime: the same text at a third of the cost, once per record written
    return moment.isoformat(" ", "microseconds")


def usage_row(row: Mapping[str, Any], group_by: GroupBy) -> dict[str, Any]:
    """A row of the usage statement as `/v1/usage` and `crossroads usage` give it."""
    return {
        group_by: row["group"],
        "requests": int(row["requests"]),
        "errors": int(row["errors"]),
        "prompt_tokens": int(row["prompt_tokens"]),
        "completion_tokens": int(row["completion_tokens"]),
        "total_tokens": int(row["total_tokens"]),
        "cached_tokens": int(row["cached_tokens"]),
        "cost": round(float(row["cost"]), 12),
    }
