"""The query parameters of `GET /v1/logs` and `GET /v1/usage`, checked strictly.

A query string is typed by hand, so every mistake in it is a 400 naming the parameter, with
`code` saying what kind of mistake: `unknown_parameter` for a name these endpoints do not
take (a filter silently ignored would show records the caller meant to exclude),
`invalid_value` for a value that cannot be used, `too_many_filters` past
`MAX_JSON_FILTERS`. Times must be ones every backend stores: Unix seconds or ISO 8601,
within years 1 to 9999 once in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.storage.log_terms import (
    GROUPS,
    MAX_LIMIT,
    GroupBy,
    StatusFilter,
    check_filter_key,
    parse_status_filter,
)

__all__ = [
    "DEFAULT_LIMIT",
    "LOG_PARAMETERS",
    "MAX_JSON_FILTERS",
    "USAGE_PARAMETERS",
    "LogQuery",
    "UsageQuery",
    "log_query",
    "usage_query",
]

DEFAULT_LIMIT = 50
# metadata.KEY, extra.KEY and tags filters, together: each is a JSON lookup on every row.
MAX_JSON_FILTERS = 20
MAX_TEXT = 1024  # characters in any other filter's value

LOG_PARAMETERS = (
    "start",
    "end",
    "model",
    "status",
    "session_id",
    "user",
    "tags",
    "limit",
    "before",
)
USAGE_PARAMETERS = ("start", "end", "group_by")
_PREFIXES = ("metadata.", "extra.")
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_MAX_SECONDS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


@dataclass(slots=True)
class LogQuery:
    """A `/v1/logs` request's filters (keyword arguments of `LogStore.page`) and page size."""

    limit: int = DEFAULT_LIMIT
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class UsageQuery:
    group_by: GroupBy = "day"
    start: datetime | None = None
    end: datetime | None = None


def _invalid(name: str, message: str) -> GatewayError:
    return bad_request(message, param=name, code="invalid_value")


def _single(params: QueryParams, name: str) -> str | None:
    """The parameter's one value; None when absent or empty. Given twice is a 400."""
    values = params.getlist(name)
    if len(values) > 1:
        raise _invalid(name, f"'{name}' was given {len(values)} times; give it once.")
    return values[0] if values and values[0] != "" else None


def _text(name: str, value: str | None) -> str | None:
    if value is not None and len(value) > MAX_TEXT:
        raise _invalid(name, f"'{name}' is longer than {MAX_TEXT} characters.")
    return value


def _check_names(params: QueryParams, known: Sequence[str], prefixes: Sequence[str]) -> None:
    """A 400 naming every query parameter this endpoint does not take, not just the first."""
    unknown = [
        name
        for name in dict.fromkeys(params)
        if name not in known and not name.startswith(tuple(prefixes))
    ]
    if unknown:
        accepted = ", ".join(f"'{n}'" for n in (*known, *(f"{p}KEY" for p in prefixes)))
        names = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise bad_request(
            f"Unknown query parameter{plural} {names}; this endpoint takes {accepted}.",
            param=unknown[0],
            code="unknown_parameter",
        )


def parse_time(name: str, value: str | None) -> datetime | None:
    """Unix seconds or ISO 8601 (UTC when no offset is given), as an aware UTC datetime."""
    if value is None:
        return None
    if _SECONDS.fullmatch(value):
        seconds = float(value)
        if seconds > _MAX_SECONDS:
            raise _invalid(name, f"'{name}' is after the year 9999: {value!r}.")
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(
            name,
            f"'{name}' must be an ISO 8601 time such as '2026-01-31T12:00:00Z' or Unix "
            f"seconds such as 1769860800, got {value[:64]!r}.",
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _invalid(
            name, f"'{name}' is outside the years 1 to 9999 once in UTC: {value!r}."
        ) from None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_LIMIT:
        raise _invalid("limit", f"'limit' must be an integer from 1 to {MAX_LIMIT}.")
    return int(value)


def _status(value: str | None) -> StatusFilter | None:
    try:
        return parse_status_filter(value)
    except ValueError:
        raise _invalid(
            "status", "'status' must be 'ok', 'error' or an HTTP status code such as 429."
        ) from None


def _tags(params: QueryParams) -> list[str]:
    """`tags=a,b` or `tags=a&tags=b`: every tag listed must be on the record."""
    tags = [t.strip() for value in params.getlist("tags") for t in value.split(",")]
    tags = [t for t in tags if t]
    for tag in tags:
        _text("tags", tag)
    return list(dict.fromkeys(tags))


def _json_filters(params: QueryParams, prefix: str) -> dict[str, str]:
    filters: dict[str, str] = {}
    for name, value in params.multi_items():
        if not name.startswith(prefix):
            continue
        key = name.removeprefix(prefix)
        try:
            check_filter_key(key)
        except ValueError as error:
            raise _invalid(name, f"Filter {name!r} cannot be used: {error}.") from None
        if key in filters:
            raise _invalid(name, f"{name!r} was given more than once; give it once.")
        filters[key] = _text(name, value) or ""
    return filters


def log_query(params: QueryParams) -> LogQuery:
    """The filters and page size of a `/v1/logs` query string, or a 400."""
    _check_names(params, LOG_PARAMETERS, _PREFIXES)
    metadata = _json_filters(params, "metadata.")
    extra = _json_filters(params, "extra.")
    tags = _tags(params)
    if len(metadata) + len(extra) + len(tags) > MAX_JSON_FILTERS:
        raise bad_request(
            f"At most {MAX_JSON_FILTERS} metadata.KEY, extra.KEY and tags filters can be "
            "combined in one query.",
            param="metadata" if metadata else "extra" if extra else "tags",
            code="too_many_filters",
        )
    filters: dict[str, Any] = {
        "start": parse_time("start", _single(params, "start")),
        "end": parse_time("end", _single(params, "end")),
        "model": _text("model", _single(params, "model")),
        "status": _status(_single(params, "status")),
        "session_id": _text("session_id", _single(params, "session_id")),
        "user": _text("user", _single(params, "user")),
        "before": _text("before", _single(params, "before")),
        "tags": tags,
        "metadata": metadata,
        "extra": extra,
    }
    return LogQuery(limit=_limit(_single(params, "limit")), filters=filters)


def usage_query(params: QueryParams) -> UsageQuery:
    """The grouping and time range of a `/v1/usage` query string, or a 400."""
    _check_names(params, USAGE_PARAMETERS, ())
    group_by = _single(params, "group_by") or "day"
    if group_by not in GROUPS:
        raise _invalid(
            "group_by", f"'group_by' must be one of {', '.join(GROUPS)}; got {group_by[:64]!r}."
        )
    return UsageQuery(
        group_by=group_by,
        start=parse_time("start", _single(params, "start")),
        end=parse_time("end", _single(params, "end")),
    )
