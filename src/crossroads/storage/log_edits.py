"""Editing logged records' metadata and tags, one record or every record a filter matches.

Callers label traffic after the fact (a reviewer tags an answer `golden`, a job marks a
session `exported`), and datasets are then built from those labels. Only `metadata` and
`tags` can change: what was asked and answered stays as logged. The edit is applied record by
record in Python, in pages of `_PAGE` ids walked in id order, so a bulk edit over a million
records holds one page in memory and means the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.json_binds import json_bind
from crossroads.storage.log_store import log_conditions
from crossroads.storage.schema import request_log
from crossroads.storage.storable import readable_json, storable_json, storable_text

__all__ = ["LogEdit", "edit_logs"]

_PAGE = 500


@dataclass(frozen=True, slots=True)
class LogEdit:
    """What to change: `metadata` keys set (a None value removes the key), tags added and
    removed, or all tags replaced (`set_tags`, applied before adding and removing)."""

    metadata: Mapping[str, Any] = field(default_factory=dict)
    add_tags: Sequence[str] = ()
    remove_tags: Sequence[str] = ()
    set_tags: Sequence[str] | None = None

    def apply(
        self, metadata: dict[str, Any] | None, tags: list[str] | None
    ) -> tuple[dict[str, Any] | None, list[str] | None]:
        """The record's new metadata and tags (None stays None when nothing is added)."""
        if self.metadata:
            merged = dict(metadata) if isinstance(metadata, dict) else {}
            for key, value in self.metadata.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            metadata = merged or None
        if self.set_tags is not None or self.add_tags or self.remove_tags:
            current = list(self.set_tags) if self.set_tags is not None else list(tags or [])
            current = [t for t in current if isinstance(t, str)]
            current.extend(self.add_tags)
            removed = set(self.remove_tags)
            kept = [t for t in dict.fromkeys(current) if t not in removed]
            tags = kept or None
        return metadata, tags


def _update(dialect: str) -> sa.Update:
    return (
        request_log.update()
        .where(request_log.c.id == sa.bindparam("b_id"))
        .values(
            {"metadata": json_bind("b_metadata", dialect), "tags": json_bind("b_tags", dialect)}
        )
    )


async def edit_logs(
    engine: AsyncEngine,
    edit: LogEdit,
    *,
    ids: Sequence[str] | None = None,
    **filters: Any,
) -> int:
    """Apply `edit` to the records with `ids` (when given) that match `filters` (the
    keyword arguments of `LogStore.query`, `key_id` included); return how many changed."""
    c = request_log.c
    conditions = log_conditions(engine.dialect.name, **filters)
    if ids is not None:
        conditions.append(c.id.in_([storable_text(i) for i in ids]))
    changed = 0
    after: str | None = None
    while True:
        page_conditions = [*conditions] if after is None else [*conditions, c.id > after]
        statement = (
            sa.select(
                c.id,
                sa.cast(c["metadata"], sa.Text()).label("metadata"),
                sa.cast(c.tags, sa.Text()).label("tags"),
            )
            .where(*page_conditions)
            .order_by(c.id)
            .limit(_PAGE)
        )
        async with engine.begin() as connection:
            rows = (await connection.execute(statement)).mappings().all()
            updates = []
            for row in rows:
                metadata = readable_json(row["metadata"])
                tags = readable_json(row["tags"])
                new_metadata, new_tags = edit.apply(
                    metadata if isinstance(metadata, dict) else None,
                    tags if isinstance(tags, list) else None,
                )
                if new_metadata == metadata and new_tags == tags:
                    continue
                updates.append(
                    {
                        "b_id": row["id"],
                        "b_metadata": storable_json(new_metadata)[0]
                        if new_metadata is not None
                        else None,
                        "b_tags": storable_json(new_tags)[0] if new_tags is not None else None,
                    }
                )
            if updates:
                await connection.execute(_update(engine.dialect.name), updates)
        changed += len(updates)
        if len(rows) < _PAGE:
            return changed
        after = rows[-1]["id"]
