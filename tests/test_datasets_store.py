"""The dataset store on SQLite and PostgreSQL: paging past `_PAGE` rows by id and by prompt
(preference groups that straddle a page boundary), rows from the log with feedback scores,
re-splitting, and ownership."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.datasets.export import preference_pairs
from crossroads.datasets.pruning import Pruner
from crossroads.datasets.rows import RowInput
from crossroads.storage.database import create_engine
from crossroads.storage.dataset_store import DatasetStore, Owner
from crossroads.storage.feedback_store import FeedbackStore
from crossroads.storage.fine_tune_store import FineTuneJob, FineTuneStore
from crossroads.storage.log_store import LogStore
from crossroads.storage.records import LogRecord
from tests.conftest import postgres_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
        await LogStore(sqlite).open()
        yield sqlite
        await sqlite.dispose()
    else:
        async for pg in postgres_engine("test_datasets_store"):
            await LogStore(pg).open()
            yield pg


def _row(prompt: int, answer: str, score: float | None) -> RowInput:
    return RowInput(
        messages=[{"role": "user", "content": f"prompt {prompt}"}],
        output={"role": "assistant", "content": answer},
        score=score,
    )


async def test_paging_by_id_and_by_prompt_past_a_page(engine: AsyncEngine) -> None:
    store = DatasetStore(engine)
    dataset = await store.create("big", Owner("k"))
    # 700 prompts, three scored answers each: 2100 rows, groups straddling the 500-row pages
    rows = [_row(p, f"{p}-{s}", s / 2) for p in range(700) for s in range(3)]
    assert await store.add_rows(dataset, rows) == 2100
    ids = [r.id async for r in store.rows(dataset.id)]
    assert len(ids) == 2100 and ids == sorted(ids) and len(set(ids)) == 2100
    pairs = [p async for p in preference_pairs(store, dataset.id, Pruner([]))]
    assert len(pairs) == 700  # exactly one best-vs-worst pair per prompt, none split apart
    for pair in pairs:
        prompt = pair.messages[0]["content"].removeprefix("prompt ")
        assert pair.preferred["content"] == f"{prompt}-2"
        assert pair.rejected["content"] == f"{prompt}-0"


async def test_rows_from_the_log_carry_the_latest_score(engine: AsyncEngine) -> None:
    logs = LogStore(engine)
    now = datetime.now(UTC)
    records = [
        LogRecord(
            id=f"{i:032x}",
            created_at=now,
            model_requested="m",
            status_code=200 if i < 3 else 500,
            key_id="k" if i != 1 else "other",
            request={"messages": [{"role": "user", "content": f"q{i}"}]},
            response={"choices": [{"message": {"role": "assistant", "content": f"a{i}"}}]},
        )
        for i in range(4)
    ]
    await logs.write(records)
    feedback = FeedbackStore(engine)
    await feedback.add(records[0].id, 0.2)
    await feedback.add(records[0].id, 0.9)  # the latest counts
    store = DatasetStore(engine)
    dataset = await store.create("from-log", Owner("k"))
    # records 0 and 2: the key's, and answered (3 failed; 1 is another key's)
    assert await store.add_from_log(dataset, key_id="k") == 2
    scores = {r.source_log_id: r.score async for r in store.rows(dataset.id)}
    assert scores == {records[0].id: 0.9, records[2].id: None}


async def test_resplit_and_ownership(engine: AsyncEngine) -> None:
    store = DatasetStore(engine)
    dataset = await store.create("owned", Owner("k", team="t"), test_fraction=0.5, seed=1)
    await store.add_rows(dataset, [_row(p, "x", None) for p in range(200)])
    first = await store.counts(dataset.id)
    assert 60 < first["test"] < 140
    await store.set_split(dataset, test_fraction=0.0, seed=1)
    assert await store.counts(dataset.id) == {"train": 200, "test": 0}
    assert await store.get(dataset.id, Owner("k")) is not None
    assert await store.get(dataset.id, Owner("teammate", team="t")) is not None
    assert await store.get(dataset.id, Owner("stranger")) is None
    assert await store.get(dataset.id, Owner(None)) is None
    assert [d.id for d in await store.visible(Owner("stranger", team="u"))] == []


async def test_fine_tune_jobs_are_recorded_and_registered(engine: AsyncEngine) -> None:
    store = FineTuneStore(engine)
    now = datetime.now(UTC)
    job = FineTuneJob(
        id="ftjob-1",
        dataset_id="ds_1",
        provider="openai",
        base_model="gpt-4o-mini",
        method="supervised",
        status="validating_files",
        file_id="file-1",
        fine_tuned_model=None,
        key_id=None,
        created_at=now,
        updated_at=now,
    )
    await store.add(job)
    await store.update("ftjob-1", status="running", fine_tuned_model=None)
    await store.update("ftjob-1", status="succeeded", fine_tuned_model="ft:gpt-4o-mini:x")
    found = await store.get("ftjob-1")
    assert found is not None and found.status == "succeeded"
    assert found.fine_tuned_model == "ft:gpt-4o-mini:x" and found.created_at == now
    assert [j.id for j in await store.all()] == ["ftjob-1"]
    assert await store.get("ftjob-2") is None
    assert await store.registered() == []  # succeeded, not registered yet
    rules = [{"name": "acme", "pattern": "Hi. "}]
    await store.register("ftjob-1", "acme-ft", rules)
    (registered,) = await store.registered()
    assert registered.registered_as == "acme-ft" and registered.pruning == rules
    await store.add(dataclasses.replace(job, id="ftjob-2", status="running"))
    await store.register("ftjob-2", "other", [])
    assert [j.id for j in await store.registered()] == ["ftjob-1"]  # only succeeded jobs
    assert (await store.get("ftjob-2")).pruning is None  # type: ignore[union-attr]
