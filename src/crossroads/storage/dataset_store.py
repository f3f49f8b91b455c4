"""Datasets and their rows, and the one owner of their SQL.

Rows are read back in pages walked by key (`_PAGE` rows a query), never with OFFSET and
never all at once, so exporting a million rows holds one page in memory on either backend.
Rows copied from the log are read from `request_log` the same way. Ownership is checked
here, not by callers: `get` with the caller's key and team answers None for a dataset of
another key, exactly as for one that does not exist.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.datasets.rows import RowInput, row_from_log
from crossroads.datasets.splits import assign_split, prompt_hash
from crossroads.storage.json_binds import json_bind
from crossroads.storage.log_store import log_conditions
from crossroads.storage.records import LogRecord
from crossroads.storage.schema import dataset_rows, datasets, feedback, request_log
from crossroads.storage.storable import readable_json, storable_json

__all__ = ["Dataset", "DatasetRow", "DatasetStore", "Owner"]

_PAGE = 500


class _RowIds:
    """Row ids that sort in insertion order: nanoseconds, strictly increasing within this
    process, then 40 random bits so rows added by several replicas at once never collide.
    Export walks rows by id, so a file comes out in the order its lines went in."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> str:
        self._last = max(self._last + 1, time.time_ns())
        return f"{self._last:016x}{secrets.token_hex(5)}"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may see a dataset: the key that made it, and the keys of its team."""

    key_id: str | None
    team: str | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str  # "ds_" + 24 hex characters
    name: str
    key_id: str | None
    team: str | None
    test_fraction: float
    seed: int
    pruning: list[dict[str, Any]] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DatasetRow:
    id: str
    dataset_id: str
    split: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    output: dict[str, Any] | None
    rejected: list[dict[str, Any]] | None
    score: float | None
    prompt_hash: str
    source_log_id: str | None
    created_at: datetime


_DATASET_FIELDS = tuple(f.name for f in dataclasses.fields(Dataset))
_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(DatasetRow))
_ROW_JSON = ("messages", "tools", "output", "rejected")
_ROW_SELECTED = tuple(
    sa.cast(dataset_rows.c[n], sa.Text()).label(n) if n in _ROW_JSON else dataset_rows.c[n]
    for n in _ROW_FIELDS
)


def _insert_row(dialect: str) -> sa.Insert:
    return dataset_rows.insert().values(
        {
            name: json_bind(f"b_{name}", dialect)
            if name in _ROW_JSON
            else sa.bindparam(f"b_{name}", type_=dataset_rows.c[name].type)
            for name in _ROW_FIELDS
        }
    )


def _row(row: Any) -> DatasetRow:
    return DatasetRow(
        **{n: readable_json(row[n]) if n in _ROW_JSON else row[n] for n in _ROW_FIELDS}
    )


def _visible(owner: Owner) -> sa.ColumnElement[bool]:
    c = datasets.c
    mine = c.key_id.is_(None) if owner.key_id is None else c.key_id == owner.key_id
    if owner.team is not None:
        return sa.or_(mine, c.team == owner.team)
    return mine


class DatasetStore:
    """Datasets in one database. Shares `engine` with its owner and never disposes of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._row_ids = _RowIds()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def create(
        self,
        name: str,
        owner: Owner,
        *,
        test_fraction: float = 0.0,
        seed: int = 0,
        pruning: list[dict[str, Any]] | None = None,
    ) -> Dataset:
        dataset = Dataset(
            id="ds_" + secrets.token_hex(12),
            name=name,
            key_id=owner.key_id,
            team=owner.team,
            test_fraction=test_fraction,
            seed=seed,
            pruning=pruning or None,
            created_at=datetime.now(UTC),
        )
        async with self._engine.begin() as connection:
            await connection.execute(datasets.insert(), dataclasses.asdict(dataset))
        return dataset

    async def visible(self, owner: Owner) -> list[Dataset]:
        statement = (
            sa.select(*(datasets.c[n] for n in _DATASET_FIELDS))
            .where(_visible(owner))
            .order_by(datasets.c.created_at, datasets.c.id)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [Dataset(**{n: row[n] for n in _DATASET_FIELDS}) for row in rows]

    async def get(self, dataset_id: str, owner: Owner) -> Dataset | None:
        statement = sa.select(*(datasets.c[n] for n in _DATASET_FIELDS)).where(
            datasets.c.id == dataset_id, _visible(owner)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).mappings().first()
        return None if row is None else Dataset(**{n: row[n] for n in _DATASET_FIELDS})

    async def counts(self, dataset_id: str) -> dict[str, int]:
        """Rows per split."""
        c = dataset_rows.c
        statement = (
            sa.select(c.split, sa.func.count()).where(c.dataset_id == dataset_id).group_by(c.split)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        counts = {"train": 0, "test": 0}
        counts.update({split: int(n) for split, n in rows})
        return counts

    async def delete(self, dataset_id: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                dataset_rows.delete().where(dataset_rows.c.dataset_id == dataset_id)
            )
            await connection.execute(datasets.delete().where(datasets.c.id == dataset_id))

    async def set_split(self, dataset: Dataset, *, test_fraction: float, seed: int) -> None:
        """Re-assign every row's split for a new fraction or seed (page by page)."""
        async with self._engine.begin() as connection:
            await connection.execute(
                datasets.update()
                .where(datasets.c.id == dataset.id)
                .values(test_fraction=test_fraction, seed=seed)
            )
        c = dataset_rows.c
        async for page in self._pages(dataset.id, columns=(c.id, c.prompt_hash)):
            updates = [
                {
                    "b_id": r["id"],
                    "b_split": assign_split(
                        r["prompt_hash"], seed=seed, test_fraction=test_fraction
                    ),
                }
                for r in page
            ]
            async with self._engine.begin() as connection:
                await connection.execute(
                    dataset_rows.update()
                    .where(c.id == sa.bindparam("b_id"))
                    .values(split=sa.bindparam("b_split")),
                    updates,
                )

    async def add_rows(self, dataset: Dataset, rows: Iterable[RowInput]) -> int:
        """Insert rows (split assigned from the dataset's seed); return how many."""
        now = datetime.now(UTC)
        batch: list[dict[str, Any]] = []
        added = 0
        for row in rows:
            digest = prompt_hash(row.messages, row.tools)
            values = {
                "b_id": self._row_ids(),
                "b_dataset_id": dataset.id,
                "b_split": assign_split(
                    digest, seed=dataset.seed, test_fraction=dataset.test_fraction
                ),
                "b_prompt_hash": digest,
                "b_score": row.score,
                "b_source_log_id": row.source_log_id,
                "b_created_at": now,
            }
            for name in _ROW_JSON:
                value = getattr(row, name)
                values[f"b_{name}"] = None if value is None else storable_json(value)[0]
            batch.append(values)
            if len(batch) >= _PAGE:
                await self._insert(batch)
                added += len(batch)
                batch = []
        if batch:
            await self._insert(batch)
            added += len(batch)
        return added

    async def _insert(self, batch: list[dict[str, Any]]) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(_insert_row(self._engine.dialect.name), batch)

    async def add_from_log(
        self, dataset: Dataset, *, limit: int | None = None, **filters: Any
    ) -> int:
        """Copy the log records `filters` match (`LogStore.query`'s, `key_id` included) as
        rows, each with the latest feedback score on it; records without a usable answer
        are skipped. Reads the log in pages, oldest first."""
        c = request_log.c
        conditions = log_conditions(self._engine.dialect.name, **filters)
        added = 0
        after: str | None = None
        while limit is None or added < limit:
            page_conditions = conditions if after is None else [*conditions, c.id > after]
            statement = (
                sa.select(*_LOG_SELECTED).where(*page_conditions).order_by(c.id).limit(_PAGE)
            )
            async with self._engine.connect() as connection:
                records = [_log_record(r) for r in (await connection.execute(statement)).mappings()]
                scores = await _latest_scores(connection, [r.id for r in records])
            made = [row for r in records if (row := row_from_log(r, scores.get(r.id))) is not None]
            if limit is not None:
                made = made[: limit - added]
            added += await self.add_rows(dataset, made)
            if len(records) < _PAGE:
                break
            after = records[-1].id
        return added

    async def get_row(self, dataset_id: str, row_id: str) -> DatasetRow | None:
        statement = sa.select(*_ROW_SELECTED).where(
            dataset_rows.c.dataset_id == dataset_id, dataset_rows.c.id == row_id
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).mappings().first()
        return None if row is None else _row(row)

    async def update_row(
        self, dataset: Dataset, row_id: str, changes: dict[str, Any]
    ) -> DatasetRow | None:
        """Change a row's messages, tools, output, rejected, score or split."""
        current = await self.get_row(dataset.id, row_id)
        if current is None:
            return None
        merged = {**dataclasses.asdict(current), **changes}
        values: dict[str, Any] = {}
        for name in _ROW_JSON:
            if name in changes:
                values[name] = json_bind(f"b_{name}", self._engine.dialect.name)
        params = {
            f"b_{n}": None if changes[n] is None else storable_json(changes[n])[0]
            for n in _ROW_JSON
            if n in changes
        }
        if "score" in changes:
            values["score"] = changes["score"]
        if "messages" in changes or "tools" in changes:
            digest = prompt_hash(merged["messages"], merged["tools"])
            values["prompt_hash"] = digest
            if "split" not in changes:
                values["split"] = assign_split(
                    digest, seed=dataset.seed, test_fraction=dataset.test_fraction
                )
        if "split" in changes:
            values["split"] = changes["split"]
        if values:
            async with self._engine.begin() as connection:
                await connection.execute(
                    dataset_rows.update()
                    .where(dataset_rows.c.dataset_id == dataset.id, dataset_rows.c.id == row_id)
                    .values(values),
                    params,
                )
        return await self.get_row(dataset.id, row_id)

    async def delete_row(self, dataset_id: str, row_id: str) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                dataset_rows.delete().where(
                    dataset_rows.c.dataset_id == dataset_id, dataset_rows.c.id == row_id
                )
            )
        return bool(result.rowcount)

    async def page_rows(
        self,
        dataset_id: str,
        *,
        limit: int = 100,
        after: str | None = None,
        split: str | None = None,
    ) -> list[DatasetRow]:
        c = dataset_rows.c
        conditions = [c.dataset_id == dataset_id]
        if after is not None:
            conditions.append(c.id > after)
        if split is not None:
            conditions.append(c.split == split)
        statement = sa.select(*_ROW_SELECTED).where(*conditions).order_by(c.id).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [_row(r) for r in rows]

    async def rows(
        self, dataset_id: str, *, split: str | None = None, by_prompt: bool = False
    ) -> AsyncIterator[DatasetRow]:
        """Every row, page by page: by id, or grouped by prompt (`by_prompt`, for pairs)."""
        c = dataset_rows.c
        order: Sequence[sa.ColumnElement[Any]] = (c.prompt_hash, c.id) if by_prompt else (c.id,)
        conditions: list[sa.ColumnElement[bool]] = [c.dataset_id == dataset_id]
        if split is not None:
            conditions.append(c.split == split)
        async for page in self._pages(
            dataset_id, columns=_ROW_SELECTED, order=order, where=conditions
        ):
            for row in page:
                yield _row(row)

    async def _pages(
        self,
        dataset_id: str,
        *,
        columns: Sequence[sa.ColumnElement[Any]],
        order: Sequence[sa.ColumnElement[Any]] | None = None,
        where: Sequence[sa.ColumnElement[bool]] | None = None,
    ) -> AsyncIterator[Sequence[Any]]:
        """Keyset pagination over `order` (a prefix of it plus the id, which is unique)."""
        c = dataset_rows.c
        order = tuple(order or (c.id,))
        conditions = list(where or [c.dataset_id == dataset_id])
        names = [str(col.key) for col in order]
        extra = [col for col in order if col.key not in {getattr(x, "key", None) for x in columns}]
        cursor: tuple[Any, ...] | None = None
        while True:
            page_conditions = list(conditions)
            if cursor is not None:
                page_conditions.append(sa.tuple_(*order) > sa.tuple_(*cursor))
            statement = (
                sa.select(*columns, *extra).where(*page_conditions).order_by(*order).limit(_PAGE)
            )
            async with self._engine.connect() as connection:
                page = (await connection.execute(statement)).mappings().all()
            if page:
                yield page
            if len(page) < _PAGE:
                return
            cursor = tuple(page[-1][name] for name in names)


# --- reading the log -------------------------------------------------------------------------

_LOG_NEEDED = (
    "id",
    "created_at",
    "model_requested",
    "status_code",
    "request",
    "response",
    "metadata",
    "key_id",
)
_LOG_SELECTED = tuple(
    sa.cast(request_log.c[n], sa.Text()).label(n)
    if isinstance(request_log.c[n].type, sa.JSON)
    else request_log.c[n]
    for n in _LOG_NEEDED
)


def _log_record(row: Any) -> LogRecord:
    values = {
        n: readable_json(row[n]) if isinstance(request_log.c[n].type, sa.JSON) else row[n]
        for n in _LOG_NEEDED
    }
    return LogRecord(**values)


async def _latest_scores(connection: Any, log_ids: Sequence[str]) -> dict[str, float]:
    """The latest feedback score per record (the one that counts, see feedback_store)."""
    if not log_ids:
        return {}
    f = feedback.c
    statement = (
        sa.select(f.log_id, f.score)
        .where(f.log_id.in_(log_ids))
        .order_by(f.log_id, f.created_at, f.id)
    )
    scores: dict[str, float] = {}
    for log_id, score in (await connection.execute(statement)).all():
        scores[log_id] = float(score)  # later rows overwrite earlier ones
    return scores
