"""Collections' storage and search on SQLite and PostgreSQL, without HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.retrieval.chunking import ChunkingStrategy, chunk_text, count_tokens
from crossroads.retrieval.embedder import LocalEmbedder
from crossroads.retrieval.library import Library
from crossroads.retrieval.parsing import UnreadableFile, extract_text, file_kind
from crossroads.retrieval.search import fuse
from crossroads.storage.collection_store import CollectionStore
from crossroads.storage.database import create_engine
from tests.conftest import postgres_engine

DOCS = {
    "paris.txt": "Paris is the capital of France. The Eiffel Tower was finished in 1889.",
    "tokyo.txt": "Tokyo is the capital of Japan and its largest city, on Honshu island.",
    "cells.txt": "Mitochondria are the powerhouse of the cell, making ATP by respiration.",
}


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder()
    model.warm()
    return model


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
        yield sqlite
        await sqlite.dispose()
    else:
        async for pg in postgres_engine("test_retrieval"):
            yield pg


@pytest.fixture
async def library(engine: AsyncEngine, embedder: LocalEmbedder) -> Library:
    store = CollectionStore(engine)
    await store.open()
    return Library(store, embedder)


async def test_every_mode_finds_the_passage_that_answers(library: Library) -> None:
    store = await library.store.create_store("k1", "facts", None, "m", 800, 400)
    for source, text in DOCS.items():
        await library.add_text(store, text, source)
    for mode in ("keyword", "vector", "hybrid"):
        hits = await library.search([store.id], "When was the Eiffel Tower finished?", 3, mode)
        assert hits[0].source == "paris.txt", mode
        assert hits[0].score >= hits[-1].score
    hits = await library.search([store.id], "capital of Japan", 2)
    assert hits[0].source == "tokyo.txt"


async def test_stores_belong_to_their_owner(library: Library) -> None:
    mine = await library.store.create_store("k1", "mine", {"a": "b"}, "m", 800, 400)
    assert await library.store.get_store("k2", mine.id) is None
    assert [s.id for s in await library.store.list_stores("k2")] == []
    assert not await library.store.delete_store("k2", mine.id)
    assert await library.store.get_store("k1", mine.id) is not None
    assert await library.store.delete_store("k1", mine.id)
    assert await library.store.get_store("k1", mine.id) is None


async def test_adding_chunks_is_seen_by_the_next_vector_search(library: Library) -> None:
    store = await library.store.create_store("k1", None, None, "m", 800, 400)
    await library.add_text(store, DOCS["cells.txt"], "cells.txt")
    first = await library.search([store.id], "capital of Japan", 5, "vector")
    assert [h.source for h in first] == ["cells.txt"]
    await library.add_text(store, DOCS["tokyo.txt"], "tokyo.txt")
    second = await library.search([store.id], "capital of Japan", 5, "vector")
    assert second[0].source == "tokyo.txt"
    removed_file = await library.store.add_file("k1", "t.txt", "assistants", "txt", 3, "x")
    assert await library.store.remove_source(store.id, removed_file.id) == 0


async def test_keyword_search_ignores_punctuation_and_empty_queries(library: Library) -> None:
    store = await library.store.create_store("k1", None, None, "m", 800, 400)
    await library.add_text(store, DOCS["paris.txt"], "paris.txt")
    assert await library.store.keyword_search([store.id], '"; DROP TABLE x; -- *', 5) == []
    assert await library.store.keyword_search([store.id], "", 5) == []
    found = await library.store.keyword_search([store.id], "EIFFEL's tower?!", 5)
    assert len(found) == 1


def test_chunks_overlap_and_cover_the_text() -> None:
    text = " ".join(f"w{i}" for i in range(50))
    chunks = chunk_text(text, ChunkingStrategy(size=20, overlap=10))
    assert [count_tokens(c) for c in chunks] == [20, 20, 20, 20]
    assert chunks[0].startswith("w0 ") and chunks[1].startswith("w10 ")
    assert chunks[-1].endswith("w49")
    assert chunk_text("   ") == []
    with pytest.raises(ValueError, match="chunk_overlap_tokens"):
        ChunkingStrategy(size=10, overlap=6)


def test_parsers_read_html_and_pdf_and_refuse_others() -> None:
    html = b"<html><head><style>p{}</style><script>x=1</script></head><body><h1>Title</h1>"
    html += b"<p>Body   text.</p></body></html>"
    assert extract_text(html, "html") == "Title\nBody text."
    assert file_kind("notes.MD") == "md"
    assert file_kind("blob", "application/pdf") == "pdf"
    with pytest.raises(UnreadableFile):
        file_kind("image.png", "image/png")
    with pytest.raises(UnreadableFile):
        extract_text(b"not a pdf", "pdf")
    with pytest.raises(UnreadableFile):
        extract_text(b"\xff\xfe\x00", "txt")
    assert "Hello PDF" in extract_text(_pdf("Hello PDF"), "pdf")


def _pdf(text: str) -> bytes:
    """A one-page PDF with `text`, written out by hand (pypdf only reads)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


def test_fusion_weighs_normalised_scores() -> None:
    keyword = {"a": 10.0, "b": 9.0, "c": 1.0}
    vector = {"b": 0.9, "c": 0.8, "d": 0.1}
    ranked = fuse(keyword, vector, alpha=0.5)
    assert [c for c, _ in ranked][:2] == ["b", "a"]
    assert fuse({}, {}, 0.5) == []
    assert np.isclose(dict(fuse(keyword, {}, 0.0))["a"], 1.0)


async def test_text_postgresql_cannot_hold_is_stored_and_looked_up_safely(
    library: Library,
) -> None:
    # A NUL in a name, an id, a file or a query: stored with U+FFFD or not found, never a
    # database error (PostgreSQL refuses NUL in text).
    store = await library.store.create_store("k1", "a\x00b", {"k": "v\x00"}, "m", 800, 400)
    assert store.name == "a\ufffdb"
    assert await library.store.get_store("k1", store.id + "\x00") is None
    assert await library.store.get_stores("k1", ["{{7*7}}\x00", store.id]) == [
        await library.store.get_store("k1", store.id)
    ]
    file = await library.store.add_file("k1", "n\x00.txt", "assistants", "txt", 3, "x\x00y")
    assert await library.store.file_text("k1", file.id) == "x\ufffdy"
    assert await library.store.get_file("k1", "file-\x00") is None
    assert not await library.store.delete_file("k1", "\ud800")
    await library.add_text(store, "The tower\x00 was finished in 1889.", "t\x00.txt")
    hits = await library.search([store.id], "tower\x00 1889", 3)
    assert hits and hits[0].text.startswith("The tower\ufffd")


async def test_a_small_store_is_found_behind_a_large_one(library: Library) -> None:
    big = await library.store.create_store("k1", None, None, "m", 800, 400)
    small = await library.store.create_store("k1", None, None, "m", 800, 400)
    kiwis = [f"Kiwi fact number {i}: kiwis are birds." for i in range(260)]
    await library.add_chunks(big, kiwis, "big")
    await library.add_chunks(small, ["A kiwi egg is large.", "Kiwis sleep by day."], "small")
    found = await library.store.keyword_search([small.id], "kiwi kiwis", 10)
    assert len(found) == 2
    rows = await library.store.chunks([c for c, _ in found])
    assert {row.store_id for row in rows.values()} == {small.id}
    both = await library.store.keyword_search([big.id, small.id], "kiwi kiwis", 300)
    assert len(both) == 262
