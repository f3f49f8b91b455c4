"""OpenAI's list paging on the query string: `limit` (1–100, default 20), `order`
(`asc`/`desc`, default `desc`), `after`/`before` (an id from an earlier page), answered with
`first_id`, `last_id` and `has_more`. A bad value is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.storage.keyset import Page, UnknownCursor

__all__ = ["MAX_LIMIT", "listing", "page_from_query", "unknown_cursor"]

MAX_LIMIT = 100
_DEFAULT_LIMIT = 20


def page_from_query(query: Mapping[str, str]) -> Page:
    raw_limit = query.get("limit")
    limit = _DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise bad_request(
                f"'limit' must be a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:40]!r}.",
                param="limit",
                code="invalid_value",
            )
        limit = int(raw_limit)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(
            f"'order' must be 'asc' or 'desc', got {order[:40]!r}.",
            param="order",
            code="invalid_value",
        )
    cursors: dict[str, str | None] = {}
    for name in ("after", "before"):
        value = query.get(name)
        if value is not None and (not value or len(value) > 256 or "\x00" in value):
            raise bad_request(
                f"'{name}' must be the id of an object from an earlier page.",
                param=name,
                code="invalid_value",
            )
        cursors[name] = value
    if cursors["after"] is not None and cursors["before"] is not None:
        raise bad_request(
            "Send 'after' or 'before', not both.", param="before", code="invalid_value"
        )
    return Page(limit, "asc" if order == "asc" else "desc", cursors["after"], cursors["before"])


def unknown_cursor(exc: UnknownCursor) -> GatewayError:
    return bad_request(
        f"'{exc.param}' names no object of this list: pass an id from an earlier page.",
        param=exc.param,
        code="invalid_value",
    )


def listing(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
