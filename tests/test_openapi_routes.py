"""`/openapi.json` documents every API route the app serves, with its methods; the few
routes not described there are listed here, so a new route cannot go undocumented silently."""

from __future__ import annotations

import httpx
from starlette.routing import Route

from crossroads.server.datasets import JSONL_TYPES
from crossroads.testing.server import ServedApp

# Served but not in the document: an alias, the document itself, and the dashboard.
_UNDOCUMENTED = {("/chat/completions", "post"), ("/openapi.json", "get")}
_UNDOCUMENTED_PREFIXES = ("/ui",)


def _served(served: ServedApp) -> set[tuple[str, str]]:
    pairs = set()
    for route in served.app.routes:
        if not isinstance(route, Route) or route.methods is None:
            continue
        path = route.path
        if not path.startswith(_UNDOCUMENTED_PREFIXES):
            pairs |= {(path, m.lower()) for m in route.methods if m != "HEAD"}
    return pairs - _UNDOCUMENTED


def test_every_route_is_documented(gateway: ServedApp) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    documented = {(p, m) for p, item in document["paths"].items() for m in item}
    missing = _served(gateway) - documented
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"
    for path in ("/v1/files", "/v1/vector_stores", "/v1/embeddings", "/v1/datasets"):
        assert path in document["paths"]


def test_collection_lists_document_their_paging(gateway: ServedApp) -> None:
    paths = httpx.get(f"{gateway.url}/openapi.json").json()["paths"]
    for path in ("/v1/files", "/v1/vector_stores", "/v1/vector_stores/{store_id}/files"):
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {"limit", "order", "after", "before"} <= names, path
    body = paths["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]
    assert {"input", "model"} <= set(body["schema"]["required"])
    store = paths["/v1/vector_stores"]["post"]["requestBody"]["content"]["application/json"]
    assert "$ref" not in str(store["schema"])  # nested models written in place


def test_dataset_export_and_uploads_document_their_content_types(gateway: ServedApp) -> None:
    paths = httpx.get(f"{gateway.url}/openapi.json").json()["paths"]
    export = paths["/v1/datasets/{dataset_id}/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"application/jsonl"}
    formats = next(p for p in export["parameters"] if p["name"] == "format")["schema"]["enum"]
    assert {"openai", "openai-dpo", "together-dpo", "trl-dpo"} <= set(formats)
    rows = paths["/v1/datasets/{dataset_id}/rows"]["post"]["requestBody"]["content"]
    assert {"application/json", *JSONL_TYPES} == set(rows)
    assert "from_logs" in rows["application/json"]["schema"]["required"]
    created = paths["/v1/datasets"]["post"]["requestBody"]["content"]["application/json"]
    assert created["schema"]["required"] == ["name"]
    assert "$ref" not in str(created["schema"])  # the pruning rules written in place
    for operation in (paths["/v1/datasets/{dataset_id}"]["get"], export):
        assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }


def test_log_patches_document_their_bodies(gateway: ServedApp) -> None:
    paths = httpx.get(f"{gateway.url}/openapi.json").json()["paths"]
    row = paths["/v1/datasets/{dataset_id}/rows/{row_id}"]["patch"]["requestBody"]
    assert {"messages", "output", "split"} <= set(
        row["content"]["application/json"]["schema"]["properties"]
    )
    for path in ("/v1/logs", "/v1/logs/{log_id}"):
        patch = paths[path]["patch"]
        schema = patch["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == {"metadata", "tags", "add_tags", "remove_tags"}
        assert schema["additionalProperties"] is False
    assert "404" in paths["/v1/logs/{log_id}"]["patch"]["responses"]
    bulk = {p["name"] for p in paths["/v1/logs"]["patch"]["parameters"]}
    assert {"model", "tags", "metadata.KEY"} <= bulk
    assert not {"limit", "before"} & bulk  # a bulk edit takes no paging
