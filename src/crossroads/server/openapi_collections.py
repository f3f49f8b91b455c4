"""The collections' and embeddings' part of `/openapi.json`: `/v1/files`,
`/v1/vector_stores…` and `/v1/embeddings`, request schemas from the pydantic models that
validate them, and the cursor paging of the lists."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crossroads.server.collections import MAX_FILE_BYTES, AddFile, AddText, CreateStore, SearchBody
from crossroads.server.embeddings import EmbeddingsBody
from crossroads.server.paging import MAX_LIMIT

__all__ = ["collection_paths"]

_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}


def _errors(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {
        status: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        for status, text in (("401", "Missing or wrong API key"), *pairs)
    }


def _inlined(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` written in place: a `#/$defs/…` reference
    inside a path of this document would resolve against the document's root, not the
    schema's (these models are not recursive, so inlining ends)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _inlined(model)}}}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20},
    },
    {
        "name": "order",
        "in": "query",
        "required": False,
        "schema": {"enum": ["asc", "desc"], "default": "desc"},
        "description": "by creation time",
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "an id from an earlier page (its `last_id`): the page that follows",
    },
    {
        "name": "before",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "an id from an earlier page (its `first_id`): the page ahead of it",
    },
]
_LISTED = {
    "description": "`{object: list, data, first_id, last_id, has_more}`",
    "content": {"application/json": {"schema": {"type": "object"}}},
}
_BAD = ("400", "Invalid request; `param` names the field or query parameter")
_MISSING = ("404", "No such object for this key (`not_found`)")


def _get(operation: str, summary: str, *params: dict[str, Any], listed: bool = False) -> Any:
    return {
        "operationId": operation,
        "summary": summary,
        "parameters": [*params, *(_PAGING if listed else [])],
        "responses": {
            "200": _LISTED if listed else {"description": summary},
            **_errors(*((_BAD,) if listed else ()), _MISSING),
        },
    }


def _post(operation: str, summary: str, model: type[BaseModel], *params: Any) -> Any:
    return {
        "operationId": operation,
        "summary": summary,
        "parameters": list(params),
        "requestBody": _json_body(model),
        "responses": {"200": {"description": summary}, **_errors(_BAD, _MISSING)},
    }


def _delete(operation: str, summary: str, param: dict[str, Any]) -> Any:
    return {
        "operationId": operation,
        "summary": summary,
        "parameters": [param],
        "responses": {"200": {"description": "`{id, object, deleted: true}`"}, **_errors(_MISSING)},
    }


def collection_paths() -> dict[str, Any]:
    file_id, store_id = _path("file_id"), _path("store_id")
    upload = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "txt, md, html or pdf"},
            "purpose": {"type": "string", "default": "assistants"},
        },
    }
    return {
        "/v1/files": {
            "post": {
                "operationId": "createFile",
                "summary": f"Upload a document (multipart, at most {MAX_FILE_BYTES} bytes)",
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": upload}},
                },
                "responses": {
                    "200": {"description": "The file object"},
                    **_errors(_BAD, ("413", "File over the limit")),
                },
            },
            "get": _get("listFiles", "The caller's files, newest first", listed=True),
        },
        "/v1/files/{file_id}": {
            "get": _get("getFile", "One file", file_id),
            "delete": _delete("deleteFile", "Delete a file", file_id),
        },
        "/v1/vector_stores": {
            "post": _post("createVectorStore", "Create a vector store", CreateStore),
            "get": _get("listVectorStores", "The caller's vector stores", listed=True),
        },
        "/v1/vector_stores/{store_id}": {
            "get": _get("getVectorStore", "One vector store", store_id),
            "delete": _delete("deleteVectorStore", "Delete a store and its chunks", store_id),
        },
        "/v1/vector_stores/{store_id}/files": {
            "post": _post("createVectorStoreFile", "Chunk and embed a file", AddFile, store_id),
            "get": _get("listVectorStoreFiles", "A store's files", store_id, listed=True),
        },
        "/v1/vector_stores/{store_id}/texts": {
            "post": _post("createVectorStoreText", "Chunk and embed a text", AddText, store_id),
        },
        "/v1/vector_stores/{store_id}/search": {
            "post": _post(
                "searchVectorStore", "Keyword, vector or hybrid search", SearchBody, store_id
            ),
        },
        "/v1/embeddings": {
            "post": {
                "operationId": "createEmbedding",
                "summary": "Embeddings, local or from an upstream model, with usage and cost",
                "requestBody": _json_body(EmbeddingsBody),
                "responses": {
                    "200": {"description": "OpenAI's embedding list"},
                    **_errors(
                        _BAD,
                        ("403", "The key may not use this model"),
                        ("404", "Unknown model (`model_not_found`)"),
                        ("429", "Over the key's rpm, tpm or budget"),
                        ("502", "Every deployment failed"),
                    ),
                },
            }
        },
    }
