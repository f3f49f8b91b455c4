"""Fine-tuning jobs this gateway submitted, and the models they produced: the job table's SQL.

A finished job's `fine_tuned_model` is registered by `crossroads finetune status --register
NAME`: the name and the dataset's pruning rules are recorded here, and the gateway serves
every registered model from its next start (finetune/serving.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.schema import fine_tune_jobs

__all__ = ["FineTuneJob", "FineTuneStore"]


@dataclass(frozen=True, slots=True)
class FineTuneJob:
    id: str  # the upstream's job id
    dataset_id: str
    provider: str
    base_model: str
    method: str
    status: str
    file_id: str
    fine_tuned_model: str | None
    key_id: str | None
    created_at: datetime
    updated_at: datetime
    registered_as: str | None = None  # the public model name it is served as
    pruning: list[dict[str, Any]] | None = None  # the training dataset's rules


_FIELDS = tuple(f.name for f in dataclasses.fields(FineTuneJob))


class FineTuneStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, job: FineTuneJob) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(fine_tune_jobs.insert(), dataclasses.asdict(job))

    async def update(self, job_id: str, *, status: str, fine_tuned_model: str | None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": datetime.now(UTC)}
        if fine_tuned_model is not None:
            values["fine_tuned_model"] = fine_tuned_model
        async with self._engine.begin() as connection:
            await connection.execute(
                fine_tune_jobs.update().where(fine_tune_jobs.c.id == job_id).values(values)
            )

    async def register(self, job_id: str, name: str, pruning: list[dict[str, Any]]) -> None:
        """Serve the job's model as `name` (a later registration of the name wins)."""
        values = {
            "registered_as": name,
            "pruning": pruning or None,
            "updated_at": datetime.now(UTC),
        }
        async with self._engine.begin() as connection:
            await connection.execute(
                fine_tune_jobs.update().where(fine_tune_jobs.c.id == job_id).values(values)
            )

    async def registered(self) -> list[FineTuneJob]:
        """Succeeded jobs registered under a name, the latest registration last."""
        statement = (
            sa.select(*(fine_tune_jobs.c[n] for n in _FIELDS))
            .where(
                fine_tune_jobs.c.registered_as.is_not(None),
                fine_tune_jobs.c.fine_tuned_model.is_not(None),
                fine_tune_jobs.c.status == "succeeded",
            )
            .order_by(fine_tune_jobs.c.updated_at)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [FineTuneJob(**{n: row[n] for n in _FIELDS}) for row in rows]

    async def get(self, job_id: str) -> FineTuneJob | None:
        statement = sa.select(*(fine_tune_jobs.c[n] for n in _FIELDS)).where(
            fine_tune_jobs.c.id == job_id
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).mappings().first()
        return None if row is None else FineTuneJob(**{n: row[n] for n in _FIELDS})

    async def all(self) -> list[FineTuneJob]:
        statement = sa.select(*(fine_tune_jobs.c[n] for n in _FIELDS)).order_by(
            fine_tune_jobs.c.created_at
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [FineTuneJob(**{n: row[n] for n in _FIELDS}) for row in rows]
