"""Usage and billing history, summed from the request log.

Every request the gateway served or refused is one row of `request_log`, with its tokens
and cost already priced, so usage needs no table of its own: it is a grouped sum over the
log, and it survives restarts because the log does. Only rows with a cost count as billed
(a request refused before it reached an upstream has none). Groups: `day` (UTC calendar
day), `model` (the public model that answered), `key`, `provider`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crossroads.storage.log_terms import GroupBy, usage_row
from crossroads.storage.schema import request_log

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["usage_query", "usage_totals"]


def _group_column(group_by: GroupBy, dialect: str) -> sa.ColumnElement[Any]:
    c = request_log.c
    if group_by == "model":
        return sa.func.coalesce(c.model_served, c.model_requested)
    if group_by == "key":
        return c.key_id
    if group_by == "provider":
        return c.provider
    if dialect == "postgresql":
        # The column is timestamptz: the day is taken in UTC, whatever the session's zone.
        return sa.func.to_char(sa.func.timezone("UTC", c.created_at), "YYYY-MM-DD")
    return sa.func.substr(sa.cast(c.created_at, sa.Text()), 1, 10)  # naive UTC text


def usage_query(
    dialect: str,
    *,
    group_by: GroupBy,
    start: datetime | None = None,
    end: datetime | None = None,
    key_id: str | None = None,
) -> sa.Select[Any]:
    """The statement `usage_totals` runs (and, compiled ahead of time by
    `log_reader_compile`, the command line's reader); each row becomes a group with
    `usage_row`."""
    c = request_log.c
    group = _group_column(group_by, dialect).label("group")
    billed = c.cost.is_not(None)
    statement = sa.select(
        group,
        sa.func.count().label("requests"),
        sa.func.count().filter(c.status_code >= 400).label("errors"),
        sa.func.coalesce(sa.func.sum(c.prompt_tokens).filter(billed), 0).label("prompt_tokens"),
        sa.func.coalesce(sa.func.sum(c.completion_tokens).filter(billed), 0).label(
            "completion_tokens"
        ),
        sa.func.coalesce(sa.func.sum(c.total_tokens).filter(billed), 0).label("total_tokens"),
        sa.func.coalesce(sa.func.sum(c.cached_tokens).filter(billed), 0).label("cached_tokens"),
        # Summed as numeric: PostgreSQL refuses a float sum that overflows, and rows written
        # before costs were bounded (or by another tool) may hold any float.
        sa.func.coalesce(sa.func.sum(sa.cast(c.cost, sa.Numeric())), 0).label("cost"),
    ).group_by(group)
    if start is not None:
        statement = statement.where(c.created_at >= start)
    if end is not None:
        statement = statement.where(c.created_at < end)
    if key_id is not None:
        statement = statement.where(c.key_id == key_id)
    return statement.order_by(group)


async def usage_totals(
    engine: AsyncEngine,
    *,
    group_by: GroupBy,
    start: datetime | None = None,
    end: datetime | None = None,
    key_id: str | None = None,
) -> list[dict[str, Any]]:
    """One row per group: requests, errors, token counts and cost over `[start, end)`."""
    statement = usage_query(
        engine.dialect.name, group_by=group_by, start=start, end=end, key_id=key_id
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(statement)).mappings().all()
    return [usage_row(row, group_by) for row in rows]
