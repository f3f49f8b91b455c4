"""Cursor paging as OpenAI's list endpoints do it (`limit`, `order`, `after`, `before`).

A cursor is the id of a row already seen; the page continues strictly past it in the
listing's order of (created_at, id). Keyset, not OFFSET: a page costs the same at any depth,
and rows created while a caller pages never shift the pages it has yet to read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Page", "UnknownCursor", "page_in_memory", "page_query"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page:
    """One page asked for: at most `limit` rows, newest first unless `order` is "asc"."""

    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


class UnknownCursor(LookupError):
    """`after` or `before` names no row of this listing (the caller's mistake: a 400)."""

    def __init__(self, param: str) -> None:
        super().__init__(param)
        self.param = param


def _forward(page: Page) -> tuple[str | None, bool]:
    """(cursor, ascending) of the scan: `before` walks back from its cursor."""
    if page.before is not None:
        return page.before, page.order == "desc"
    return page.after, page.order == "asc"


async def page_query(
    connection: AsyncConnection,
    query: sa.Select[Any],
    created: sa.ColumnElement[Any],
    ident: sa.ColumnElement[Any],
    page: Page,
) -> tuple[list[Any], bool]:
    """The page's rows of `query` (already filtered to the caller's), in `page.order`, and
    whether more rows lie beyond them in the direction of paging."""
    cursor, ascending = _forward(page)
    if cursor is not None:
        found = (
            await connection.execute(query.with_only_columns(created).where(ident == cursor))
        ).first()
        if found is None:
            raise UnknownCursor("before" if page.before is not None else "after")
        at = found[0]
        if ascending:
            query = query.where(sa.or_(created > at, sa.and_(created == at, ident > cursor)))
        else:
            query = query.where(sa.or_(created < at, sa.and_(created == at, ident < cursor)))
    keys = (created.asc(), ident.asc()) if ascending else (created.desc(), ident.desc())
    rows: list[Any] = list(await connection.execute(query.order_by(*keys).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    if page.before is not None:
        rows.reverse()  # scanned away from the cursor, shown in the order asked
    return rows, more


def page_in_memory(
    items: Sequence[T], key: Callable[[T], tuple[datetime, str]], page: Page
) -> tuple[list[T], bool]:
    """`page_query` over rows already in memory (a listing small enough to read whole)."""
    cursor, ascending = _forward(page)
    ordered = sorted(items, key=key, reverse=not ascending)
    if cursor is not None:
        at = next((i for i, item in enumerate(ordered) if key(item)[1] == cursor), None)
        if at is None:
            raise UnknownCursor("before" if page.before is not None else "after")
        ordered = ordered[at + 1 :]
    rows = ordered[: page.limit]
    more = len(ordered) > page.limit
    if page.before is not None:
        rows.reverse()
    return rows, more
