"""Retrieval collections over HTTP, in the shape of OpenAI's files and vector stores.

`POST /v1/files` (multipart: `file`, `purpose`) stores a file's text; `/v1/vector_stores`
creates, lists, reads and deletes collections; files are added with
`POST /v1/vector_stores/{id}/files` and plain text with `POST /v1/vector_stores/{id}/texts`
(an extension); `POST /v1/vector_stores/{id}/search` ranks chunks (`mode`: hybrid, keyword,
vector). Everything belongs to the key that made it: another key's id answers 404, exactly
like an id that does not exist; virtual keys of one team share the team's
(`retrieval/owners.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.json_body import decode_json_body
from crossroads.protocol.validation import validate_body
from crossroads.retrieval.chunking import DEFAULT_OVERLAP, DEFAULT_SIZE, ChunkingStrategy
from crossroads.retrieval.library import Library
from crossroads.retrieval.owners import collection_owner
from crossroads.retrieval.parsing import UnreadableFile, extract_text, file_kind
from crossroads.retrieval.search import Hit
from crossroads.server.paging import listing, page_from_query, unknown_cursor
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.storage.collection_store import StoredFile, VectorStore
from crossroads.storage.keyset import UnknownCursor, page_in_memory

__all__ = ["collection_routes", "hit_json"]

_log = logging.getLogger("crossroads.collections")

MAX_FILE_BYTES = 32 * 1024 * 1024
_MAX_JSON = 8 * 1024 * 1024


class _Static(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    max_chunk_size_tokens: Annotated[int, Field(ge=1, le=4096)] = DEFAULT_SIZE
    chunk_overlap_tokens: Annotated[int, Field(ge=0)] = DEFAULT_OVERLAP


class _Chunking(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["auto", "static"] = "auto"
    static: _Static | None = None

    def strategy(self) -> ChunkingStrategy:
        static = self.static or _Static()
        try:
            return ChunkingStrategy(static.max_chunk_size_tokens, static.chunk_overlap_tokens)
        except ValueError as exc:
            raise bad_request(str(exc), param="chunking_strategy") from None


class CreateStore(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(max_length=256)] | None = None
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    metadata: dict[str, str] | None = None
    chunking_strategy: _Chunking | None = None


class AddFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    file_id: Annotated[str, Field(min_length=1)]
    attributes: dict[str, Any] | None = None
    chunking_strategy: _Chunking | None = None


class AddText(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1, max_length=512)] = "text"


class _Ranking(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    score_threshold: Annotated[float, Field(ge=0, le=1)] | None = None


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    query: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)]
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    mode: Literal["hybrid", "keyword", "vector"] = "hybrid"
    ranking_options: _Ranking | None = None
    rewrite_query: bool | None = None
    filters: dict[str, Any] | None = None


def file_json(row: StoredFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": int(row.created_at.timestamp()),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
    }


def store_json(row: VectorStore, sources: list[tuple[str | None, str, int]]) -> dict[str, Any]:
    files = sum(1 for file_id, _s, _n in sources if file_id is not None)
    return {
        "id": row.id,
        "object": "vector_store",
        "created_at": int(row.created_at.timestamp()),
        "name": row.name,
        "metadata": row.metadata or {},
        "status": "completed",
        "file_counts": {
            "in_progress": 0,
            "completed": files,
            "failed": 0,
            "cancelled": 0,
            "total": files,
        },
        "chunk_count": sum(n for _f, _s, n in sources),
        "embedding_model": row.embedding_model,
        "chunking_strategy": {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": row.chunk_size,
                "chunk_overlap_tokens": row.chunk_overlap,
            },
        },
    }


def hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "file_id": hit.file_id,
        "filename": hit.source,
        "score": hit.score,
        "attributes": {"chunk_id": hit.chunk_id, "vector_store_id": hit.store_id},
        "content": [{"type": "text", "text": hit.text}],
    }


async def _json(request: Request, model: type[BaseModel], what: str) -> Any:
    raw = await request.body()
    if len(raw) > _MAX_JSON:
        raise GatewayError(
            413, f"Bodies are limited to {_MAX_JSON} bytes.", code="request_too_large"
        )
    body = decode_json_body(raw) if raw else {}
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_value")
    return validate_body(model, body, what)


Handler = Callable[[Request, AppState, str, Library], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, find the library, answer errors in OpenAI's envelope."""

    async def endpoint(request: Request) -> Response:
        state: AppState = request.app.state.crossroads
        try:
            client = request.client
            caller = await state.keys.authenticate(
                request.headers.get("authorization"), client.host if client else None
            )
            if state.library is None:
                raise GatewayError(503, "Collections are not available.", code="unavailable")
            owner = collection_owner(caller.key_id, caller.virtual_key)
            return await handler(request, state, owner, state.library)
        except GatewayError as exc:
            return error_response(exc)
        except (sa_exc.SQLAlchemyError, OSError):
            _log.exception("collections: storage failed")
            return error_response(
                GatewayError(
                    503,
                    "The collection store is unavailable; retry shortly.",
                    code="store_unavailable",
                )
            )

    return endpoint


def _missing(kind: str, ident: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, f"No {kind} with id '{ident}'.", param=param, code="not_found")


async def _store(library: Library, owner: str, store_id: str) -> VectorStore:
    row = await library.store.get_store(owner, store_id)
    if row is None:
        raise _missing("vector store", store_id)
    return row


# --- files ----------------------------------------------------------------------------------


async def upload_file(request: Request, state: AppState, owner: str, library: Library) -> Response:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FILE_BYTES + 65536:
        raise GatewayError(
            413, f"Files are limited to {MAX_FILE_BYTES} bytes.", code="file_too_large"
        )
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request(
            "Upload files as multipart/form-data with fields 'file' and 'purpose'.",
            code="invalid_value",
        )
    try:
        async with request.form(max_part_size=MAX_FILE_BYTES) as form:
            upload = form.get("file")
            purpose = form.get("purpose") or "assistants"
            if not isinstance(upload, UploadFile):
                raise bad_request("The form has no 'file' part.", param="file")
            data = await upload.read()
            filename = upload.filename or "upload"
            content_type = upload.content_type
    except GatewayError:
        raise
    except Exception as exc:  # multipart errors: the caller's body
        raise bad_request(f"The multipart body could not be read: {exc}", param="file") from None
    if not isinstance(purpose, str):
        raise bad_request("'purpose' must be a string.", param="purpose")
    try:
        kind = file_kind(filename, content_type)
        text = extract_text(data, kind)
    except UnreadableFile as exc:
        raise bad_request(f"{exc}.", param="file", code="unsupported_file") from None
    row = await library.store.add_file(owner, filename, purpose, kind, len(data), text)
    return JSONResponse(file_json(row))


async def list_files(request: Request, state: AppState, owner: str, library: Library) -> Response:
    page = page_from_query(request.query_params)
    try:
        rows, more = await library.store.file_page(owner, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return JSONResponse(listing([file_json(r) for r in rows], more))


async def get_file(request: Request, state: AppState, owner: str, library: Library) -> Response:
    file_id = request.path_params["file_id"]
    row = await library.store.get_file(owner, file_id)
    if row is None:
        raise _missing("file", file_id)
    return JSONResponse(file_json(row))


async def delete_file(request: Request, state: AppState, owner: str, library: Library) -> Response:
    file_id = request.path_params["file_id"]
    if not await library.store.delete_file(owner, file_id):
        raise _missing("file", file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})


# --- vector stores --------------------------------------------------------------------------


async def _attach(
    library: Library, owner: str, store: VectorStore, file_id: str, param: str
) -> tuple[StoredFile, int]:
    row = await library.store.get_file(owner, file_id)
    text = await library.store.file_text(owner, file_id)
    if row is None or text is None:
        raise _missing("file", file_id, param)
    await library.store.remove_source(store.id, file_id)  # adding again replaces
    count = await library.add_text(store, text, row.filename, file_id=row.id)
    return row, count


async def create_store(request: Request, state: AppState, owner: str, library: Library) -> Response:
    body: CreateStore = await _json(request, CreateStore, "Vector store")
    strategy = (body.chunking_strategy or _Chunking()).strategy()
    for i, file_id in enumerate(body.file_ids):
        if await library.store.get_file(owner, file_id) is None:
            raise _missing("file", file_id, f"file_ids[{i}]")
    store = await library.store.create_store(
        owner, body.name, body.metadata, library.embedder.model, strategy.size, strategy.overlap
    )
    for i, file_id in enumerate(body.file_ids):
        await _attach(library, owner, store, file_id, f"file_ids[{i}]")
    return JSONResponse(store_json(store, await library.store.store_sources(store.id)))


async def list_stores(request: Request, state: AppState, owner: str, library: Library) -> Response:
    page = page_from_query(request.query_params)
    try:
        rows, more = await library.store.store_page(owner, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    data = [store_json(r, await library.store.store_sources(r.id)) for r in rows]
    return JSONResponse(listing(data, more))


async def get_store(request: Request, state: AppState, owner: str, library: Library) -> Response:
    store = await _store(library, owner, request.path_params["store_id"])
    return JSONResponse(store_json(store, await library.store.store_sources(store.id)))


async def delete_store(request: Request, state: AppState, owner: str, library: Library) -> Response:
    store_id = request.path_params["store_id"]
    if not await library.store.delete_store(owner, store_id):
        raise _missing("vector store", store_id)
    library.searcher.forget(store_id)
    return JSONResponse({"id": store_id, "object": "vector_store.deleted", "deleted": True})


def _store_file_json(store_id: str, file_id: str, chunks: int, created_at: int) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "vector_store.file",
        "vector_store_id": store_id,
        "status": "completed",
        "created_at": created_at,
        "last_error": None,
        "chunk_count": chunks,
    }


async def add_store_file(
    request: Request, state: AppState, owner: str, library: Library
) -> Response:
    store = await _store(library, owner, request.path_params["store_id"])
    body: AddFile = await _json(request, AddFile, "Vector store file")
    row, count = await _attach(library, owner, store, body.file_id, "file_id")
    return JSONResponse(_store_file_json(store.id, row.id, count, int(row.created_at.timestamp())))


async def list_store_files(
    request: Request, state: AppState, owner: str, library: Library
) -> Response:
    store = await _store(library, owner, request.path_params["store_id"])
    page = page_from_query(request.query_params)
    # A store's files are few enough (one row each) to page in memory; a deleted file's
    # chunks stay searchable and it stays listed, dated as the store.
    files = [
        (file_id, n, created or store.created_at)
        for file_id, n, created in await library.store.store_files(store.id)
    ]
    try:
        rows, more = page_in_memory(files, lambda f: (f[2], f[0]), page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    data = [_store_file_json(store.id, f, n, int(created.timestamp())) for f, n, created in rows]
    return JSONResponse(listing(data, more))


async def add_store_text(
    request: Request, state: AppState, owner: str, library: Library
) -> Response:
    store = await _store(library, owner, request.path_params["store_id"])
    body: AddText = await _json(request, AddText, "Vector store text")
    count = await library.add_text(store, body.text, body.source)
    return JSONResponse(
        {
            "object": "vector_store.text",
            "vector_store_id": store.id,
            "source": body.source,
            "chunk_count": count,
        }
    )


async def search_store(request: Request, state: AppState, owner: str, library: Library) -> Response:
    store = await _store(library, owner, request.path_params["store_id"])
    body: SearchBody = await _json(request, SearchBody, "Vector store search")
    query = body.query if isinstance(body.query, str) else " ".join(body.query)
    hits = await library.search([store.id], query, body.max_num_results, body.mode)
    threshold = body.ranking_options.score_threshold if body.ranking_options else None
    if threshold is not None:
        hits = [h for h in hits if h.score >= threshold]
    return JSONResponse(
        {
            "object": "vector_store.search_results.page",
            "search_query": body.query,
            "data": [hit_json(h) for h in hits],
            "has_more": False,
            "next_page": None,
        }
    )


def collection_routes() -> list[Route]:
    e = _endpoint
    return [
        Route("/v1/files", e(upload_file), methods=["POST"]),
        Route("/v1/files", e(list_files), methods=["GET"]),
        Route("/v1/files/{file_id}", e(get_file), methods=["GET"]),
        Route("/v1/files/{file_id}", e(delete_file), methods=["DELETE"]),
        Route("/v1/vector_stores", e(create_store), methods=["POST"]),
        Route("/v1/vector_stores", e(list_stores), methods=["GET"]),
        Route("/v1/vector_stores/{store_id}", e(get_store), methods=["GET"]),
        Route("/v1/vector_stores/{store_id}", e(delete_store), methods=["DELETE"]),
        Route("/v1/vector_stores/{store_id}/files", e(add_store_file), methods=["POST"]),
        Route("/v1/vector_stores/{store_id}/files", e(list_store_files), methods=["GET"]),
        Route("/v1/vector_stores/{store_id}/texts", e(add_store_text), methods=["POST"]),
        Route("/v1/vector_stores/{store_id}/search", e(search_store), methods=["POST"]),
    ]
