"""Collections over HTTP with the official SDK: files, vector stores, search, and use in chat."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY

FACTS = (
    "The Zephyr-9 router ships with firmware 4.2. Its default admin port is 8443.\n\n"
    "Support for the Zephyr-9 ends in March 2031."
)


@pytest.fixture
def other(gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gateway.url}/v1", api_key=OTHER_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def store_id(client: OpenAI) -> str:
    uploaded = client.files.create(
        file=("zephyr.md", io.BytesIO(FACTS.encode())), purpose="assistants"
    )
    assert uploaded.filename == "zephyr.md" and uploaded.bytes == len(FACTS.encode())
    store = client.vector_stores.create(name="manuals", file_ids=[uploaded.id])
    assert store.file_counts.completed == 1
    return store.id


def test_search_finds_the_uploaded_passage(client: OpenAI, store_id: str) -> None:
    page = client.vector_stores.search(store_id, query="Zephyr-9 admin port", max_num_results=3)
    results = list(page)
    assert results and "8443" in results[0].content[0].text
    assert results[0].filename == "zephyr.md"
    assert 0 < results[0].score <= 1
    listed = client.vector_stores.files.list(store_id)
    assert [f.vector_store_id for f in listed] == [store_id]


def test_other_keys_see_nothing(client: OpenAI, other: OpenAI, store_id: str) -> None:
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.retrieve(store_id)
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.search(store_id, query="port")
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.delete(store_id)
    assert store_id not in [s.id for s in other.vector_stores.list()]
    assert store_id in [s.id for s in client.vector_stores.list()]
    with pytest.raises(openai.NotFoundError) as caught:
        other.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "port?"}],
            extra_body={"rag_tune": store_id},
        )
    assert caught.value.body["param"] == "rag_tune"  # type: ignore[index]


def test_delete_removes_the_store(client: OpenAI, store_id: str) -> None:
    assert client.vector_stores.delete(store_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store_id)


def _sent(fake: FakeOpenAI) -> dict[str, Any]:
    return fake.requests[-1]["body"]


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "retrieval", "retrieval": {"bucket_ids": ["{id}"]}}]},
        {"tools": [{"type": "file_search", "vector_store_ids": ["{id}"]}]},
        {"rag_tune": "{id}"},
        {"rag_tune": "manuals"},
    ],
    ids=["telnyx", "file_search", "rag_tune", "rag_tune_name"],
)
def test_chat_with_retrieval_injects_passages_and_cites_them(
    client: OpenAI, fake_upstream: FakeOpenAI, store_id: str, extra: dict[str, Any]
) -> None:
    body = _with_id(extra, store_id)
    answer = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "Which admin port?"}], extra_body=body
    )
    citations = answer.model_extra["citations"]  # type: ignore[index]
    assert citations[0]["vector_store_id"] == store_id
    assert citations[0]["source"] == "zephyr.md" and citations[0]["chunk_id"].startswith("chunk_")
    sent = _sent(fake_upstream)
    assert "8443" in sent["messages"][0]["content"] and sent["messages"][0]["role"] == "system"
    assert "tools" not in sent and "rag_tune" not in sent


def test_streamed_chat_carries_citations(client: OpenAI, store_id: str) -> None:
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "When does support end?"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"rag_tune": store_id},
    )
    extras = [c.model_extra for c in stream if c.model_extra and "citations" in c.model_extra]
    assert extras and extras[-1]["citations"][0]["vector_store_id"] == store_id


def _with_id(value: Any, store_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _with_id(v, store_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_id(v, store_id) for v in value]
    return value.replace("{id}", store_id) if isinstance(value, str) else value


def test_bad_uploads_and_bodies_get_400s(gateway: ServedApp, client: OpenAI) -> None:
    auth = {"authorization": f"Bearer {API_KEY}"}
    url = f"{gateway.url}/v1"
    png = httpx.post(f"{url}/files", headers=auth, files={"file": ("x.png", b"\x89PNG")})
    assert png.status_code == 400 and png.json()["error"]["code"] == "unsupported_file"
    not_form = httpx.post(f"{url}/files", headers=auth, json={"file": "x"})
    assert not_form.status_code == 400
    bad = httpx.post(f"{url}/vector_stores", headers=auth, json={"name": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    chunking = {
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 80},
        }
    }
    overlap = httpx.post(f"{url}/vector_stores", headers=auth, json=chunking)
    assert overlap.status_code == 400
    missing = httpx.post(f"{url}/vector_stores", headers=auth, json={"file_ids": ["file-nope"]})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "file_ids[0]"
    store = client.vector_stores.create(name="t")
    text = httpx.post(
        f"{url}/vector_stores/{store.id}/texts",
        headers=auth,
        json={"text": "Kiwis are flightless birds.", "source": "birds"},
    )
    assert text.status_code == 200 and text.json()["chunk_count"] == 1
    empty = httpx.post(f"{url}/vector_stores/{store.id}/search", headers=auth, json={"query": ""})
    assert empty.status_code == 400


MASTER = "mk-retrieval-0123456789abcdef"


@pytest.fixture(scope="module")
def teams(fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from crossroads.server.auth import MASTER_KEY_ENV
    from tests.conftest import gateway_config, running_gateway

    database = tmp_path_factory.mktemp("teams") / "gateway.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(gateway_config(fake_upstream, database)) as served:
            yield served


def _virtual_key(served: ServedApp, team: str | None) -> OpenAI:
    response = httpx.post(
        f"{served.url}/admin/keys",
        json={"name": "member", "team": team},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert response.status_code == 200, response.text
    return OpenAI(base_url=f"{served.url}/v1", api_key=response.json()["key"], max_retries=0)


def test_team_members_share_collections_and_outsiders_do_not(teams: ServedApp) -> None:
    alice, bob = _virtual_key(teams, "research"), _virtual_key(teams, "research")
    mallory, loner = _virtual_key(teams, "sales"), _virtual_key(teams, None)
    store = alice.vector_stores.create(name="shared")
    assert bob.vector_stores.retrieve(store.id).id == store.id
    for outsider in (mallory, loner):
        with pytest.raises(openai.NotFoundError):
            outsider.vector_stores.retrieve(store.id)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/vector_stores", [1, 2]),
        ("POST", "/vector_stores", {"unknown": 1}),
        ("POST", "/vector_stores", {"metadata": {"a": 1}}),
        ("POST", "/vector_stores/{id}/search", {"query": ["a", 3]}),
        ("POST", "/vector_stores/{id}/search", {"query": "a", "max_num_results": 0}),
        ("POST", "/vector_stores/{id}/search", {"query": "a", "mode": "magic"}),
        ("POST", "/vector_stores/{id}/files", {"file_id": ""}),
        ("POST", "/vector_stores/{id}/files", {"file_id": "file-none"}),
        ("POST", "/vector_stores/{id}/texts", {"text": ""}),
        ("POST", "/vector_stores/vs_none/search", {"query": "a"}),
        ("GET", "/files/file-none", None),
        ("DELETE", "/files/file-none", None),
        ("POST", "/embeddings", {"model": "wordllama-l2-supercat-256", "input": [[1, 2]]}),
        ("POST", "/embeddings", {"model": "wordllama-l2-supercat-256", "input": {"a": 1}}),
        ("POST", "/embeddings", {"input": "x"}),
        ("POST", "/embeddings", {"model": "error-400", "input": "x"}),
    ],
)
def test_bad_requests_get_an_error_envelope_not_a_500(
    gateway: ServedApp, client: OpenAI, method: str, path: str, body: Any
) -> None:
    store = client.vector_stores.create(name="bad-input")
    response = httpx.request(
        method,
        f"{gateway.url}/v1{path.replace('{id}', store.id)}",
        headers={"authorization": f"Bearer {API_KEY}"},
        json=body,
    )
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]


def test_malformed_json_and_empty_pdf_uploads(gateway: ServedApp) -> None:
    auth = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    broken = httpx.post(f"{gateway.url}/v1/vector_stores", headers=auth, content=b"{nope")
    assert broken.status_code == 400
    pdf = httpx.post(
        f"{gateway.url}/v1/files",
        headers={"authorization": f"Bearer {API_KEY}"},
        files={"file": ("empty.pdf", b"")},
    )
    assert pdf.status_code == 400 and pdf.json()["error"]["code"] == "unsupported_file"
