"""`crossroads collections`: create, fill, search and delete retrieval collections.

Works on the configured database directly (like `logs`), embedding on this machine with the
packaged model, so a large folder of documents is ingested with a progress bar and no
gateway running. Collections made here belong to `--owner` (a key name or virtual key id;
default: the loopback-only owner), the same rule the HTTP API applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crossroads.cli.common import ConfigOption, JsonOption, cell, database_url, fail, print_json

if TYPE_CHECKING:
    from crossroads.retrieval.library import Library

__all__ = ["collections_app"]

collections_app = typer.Typer(
    help="Retrieval collections (vector stores): create, add files, search, delete.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

OwnerOption = Annotated[
    str, typer.Option("--owner", help="Key name or virtual key id that owns the collection.")
]


async def _library(config: Path | None) -> tuple[Library, Any]:
    from crossroads.retrieval.embedder import LocalEmbedder
    from crossroads.retrieval.library import Library
    from crossroads.storage.collection_store import CollectionStore
    from crossroads.storage.database import create_engine

    engine = create_engine(database_url(config))
    store = CollectionStore(engine)
    await store.open()
    return Library(store, LocalEmbedder()), engine


def _run(work: Any) -> Any:
    import asyncio

    return asyncio.run(work)


@collections_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The collection's name.")],
    config: ConfigOption = None,
    owner: OwnerOption = "",
    chunk_size: Annotated[int, typer.Option(min=1, max=4096, help="Tokens per chunk.")] = 800,
    overlap: Annotated[int, typer.Option(min=0, help="Tokens shared by neighbours.")] = 400,
) -> None:
    """Create an empty collection and print its id."""
    from crossroads.retrieval.chunking import ChunkingStrategy

    try:
        ChunkingStrategy(chunk_size, overlap)
    except ValueError as exc:
        raise fail(str(exc)) from None

    async def work() -> str:
        library, engine = await _library(config)
        try:
            store = await library.store.create_store(
                owner, name, None, library.embedder.model, chunk_size, overlap
            )
            return store.id
        finally:
            await engine.dispose()

    print(_run(work()))


@collections_app.command("add")
def add(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    paths: Annotated[list[Path], typer.Argument(help="Files (.txt .md .html .pdf) or folders.")],
    config: ConfigOption = None,
    owner: OwnerOption = "",
) -> None:
    """Parse, chunk, embed and store files, with a progress bar over all their chunks."""
    from crossroads.retrieval.chunking import ChunkingStrategy, chunk_text
    from crossroads.retrieval.parsing import UnreadableFile, extract_text, file_kind

    files = [p for path in paths for p in (sorted(path.rglob("*")) if path.is_dir() else [path])]
    files = [f for f in files if f.is_file()]
    if not files:
        raise fail("no files to add")

    async def work() -> int:
        from rich.progress import Progress

        library, engine = await _library(config)
        try:
            store = await library.store.get_store(owner, collection)
            if store is None:
                raise fail(f"no collection {collection!r} for owner {owner!r}")
            strategy = ChunkingStrategy(store.chunk_size, store.chunk_overlap)
            parsed = []
            for path in files:
                try:
                    data = path.read_bytes()
                    kind = file_kind(path.name)
                    text = extract_text(data, kind)
                except (UnreadableFile, OSError) as exc:
                    typer.echo(f"skipped {path}: {exc}", err=True)
                    continue
                parsed.append((path, kind, len(data), text, chunk_text(text, strategy)))
            total = sum(len(chunks) for *_rest, chunks in parsed)
            with Progress(transient=False) as progress:
                task = progress.add_task("embedding chunks", total=total)
                for path, kind, size, text, chunks in parsed:
                    row = await library.store.add_file(
                        owner, path.name, "assistants", kind, size, text
                    )
                    done = 0

                    def advance(finished: int, _all: int) -> None:
                        nonlocal done
                        progress.advance(task, finished - done)
                        done = finished

                    await library.add_chunks(store, chunks, path.name, row.id, advance)
            return total
        finally:
            await engine.dispose()

    count = _run(work())
    typer.echo(f"added {count} chunks from {len(files)} file(s)", err=True)


@collections_app.command("list")
def list_(config: ConfigOption = None, owner: OwnerOption = "", json: JsonOption = False) -> None:
    """List the owner's collections, newest first."""

    async def work() -> list[dict[str, Any]]:
        library, engine = await _library(config)
        try:
            rows = []
            for store in await library.store.list_stores(owner):
                sources = await library.store.store_sources(store.id)
                rows.append(
                    {
                        "id": store.id,
                        "name": store.name,
                        "files": sum(1 for f, _s, _n in sources if f is not None),
                        "chunks": sum(n for _f, _s, n in sources),
                        "created_at": store.created_at.isoformat(),
                    }
                )
            return rows
        finally:
            await engine.dispose()

    rows = _run(work())
    if json:
        print_json(rows)
        return
    from rich.table import Table

    from crossroads.cli.common import print_table

    table = Table("id", "name", "files", "chunks", "created")
    for row in rows:
        table.add_row(*(cell(row[k]) for k in ("id", "name", "files", "chunks", "created_at")))
    print_table(table)


@collections_app.command("search")
def search(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    config: ConfigOption = None,
    owner: OwnerOption = "",
    limit: Annotated[int, typer.Option(min=1, max=50)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, keyword or vector.")] = "hybrid",
    json: JsonOption = False,
) -> None:
    """Search a collection and print the best chunks with their scores."""
    if mode not in ("hybrid", "keyword", "vector"):
        raise fail("--mode must be hybrid, keyword or vector")

    async def work() -> list[dict[str, Any]]:
        library, engine = await _library(config)
        try:
            if await library.store.get_store(owner, collection) is None:
                raise fail(f"no collection {collection!r} for owner {owner!r}")
            hits = await library.search([collection], query, limit, mode)  # type: ignore[arg-type]
            return [
                {"score": h.score, "source": h.source, "chunk_id": h.chunk_id, "text": h.text}
                for h in hits
            ]
        finally:
            await engine.dispose()

    hits = _run(work())
    if json:
        print_json(hits)
        return
    for hit in hits:
        print(f"{hit['score']:.3f}  {hit['source']}  {hit['chunk_id']}")
        print("    " + " ".join(hit["text"].split())[:300])


@collections_app.command("delete")
def delete(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    config: ConfigOption = None,
    owner: OwnerOption = "",
) -> None:
    """Delete a collection and its chunks."""

    async def work() -> bool:
        library, engine = await _library(config)
        try:
            return await library.store.delete_store(owner, collection)
        finally:
            await engine.dispose()

    if not _run(work()):
        raise fail(f"no collection {collection!r} for owner {owner!r}")
    typer.echo(f"deleted {collection}", err=True)
