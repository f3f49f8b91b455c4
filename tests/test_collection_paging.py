"""OpenAI's cursor paging on the collection lists: the store (sqlite and PostgreSQL), and
`/v1/files`, `/v1/vector_stores` and `/v1/vector_stores/{id}/files` through the SDK."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.collection_store import CollectionStore
from crossroads.storage.database import create_engine
from crossroads.storage.keyset import Page, UnknownCursor
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, postgres_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CollectionStore]:
    if request.param == "sqlite":
        engine: AsyncEngine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
        opened = CollectionStore(engine)
        await opened.open()
        yield opened
        await engine.dispose()
    else:
        async for pg in postgres_engine("test_paging"):
            opened = CollectionStore(pg)
            await opened.open()
            yield opened


async def test_pages_walk_every_store_once_in_both_orders(store: CollectionStore) -> None:
    made = [(await store.create_store("k", f"s{i}", None, "m", 800, 400)).id for i in range(7)]
    await store.create_store("other", "not mine", None, "m", 800, 400)
    newest_first = [s.id for s in (await store.store_page("k", Page(limit=100)))[0]]
    assert sorted(newest_first) == sorted(made) and len(newest_first) == 7
    for order, expected in (("desc", newest_first), ("asc", newest_first[::-1])):
        seen: list[str] = []
        after = None
        while True:
            rows, more = await store.store_page("k", Page(3, order, after=after))  # type: ignore[arg-type]
            seen += [r.id for r in rows]
            if not more:
                break
            after = rows[-1].id
        assert seen == expected, order
        # Walking back from the last one with `before` gives the page just ahead of it.
        back, more = await store.store_page("k", Page(3, order, before=expected[-1]))  # type: ignore[arg-type]
        assert [r.id for r in back] == expected[-4:-1] and more
    with pytest.raises(UnknownCursor) as caught:
        await store.store_page("other", Page(after=made[0]))  # another owner's id
    assert caught.value.param == "after"


async def test_files_page(store: CollectionStore) -> None:
    ids = [
        (await store.add_file("k", f"f{i}.txt", "assistants", "txt", 6, f"text {i}")).id
        for i in range(4)
    ]
    first, more = await store.file_page("k", Page(limit=2, order="asc"))
    assert more and len(first) == 2
    rest, more = await store.file_page("k", Page(limit=2, order="asc", after=first[-1].id))
    assert not more and sorted(r.id for r in first + rest) == sorted(ids)


def test_sdk_auto_paging_walks_every_file_and_store(client: OpenAI) -> None:
    ids = {
        client.files.create(file=(f"p{i}.txt", io.BytesIO(b"paging text")), purpose="assistants").id
        for i in range(5)
    }
    page = client.files.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert ids <= {f.id for f in client.files.list(limit=2)}  # the SDK follows `after`
    store = client.vector_stores.create(name="paged", file_ids=sorted(ids))
    listed = client.vector_stores.files.list(store.id, limit=2, order="asc")
    assert len(listed.data) == 2 and listed.has_more
    assert {f.id for f in listed} == ids
    stores = [client.vector_stores.create(name=f"v{i}").id for i in range(3)]
    newest = client.vector_stores.list(limit=2)
    assert [s.id for s in newest.data] == stores[:0:-1]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=up", "order"),
        ("after=", "after"),
        ("after=file-nosuch", "after"),
        ("before=vs_nosuch", "before"),
        ("after=a&before=b", "before"),
    ],
)
def test_bad_paging_values_are_400_naming_the_parameter(
    gateway: ServedApp, query: str, param: str
) -> None:
    for path in ("/v1/files", "/v1/vector_stores"):
        response = httpx.get(
            f"{gateway.url}{path}?{query}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["param"] == param
