"""`/v1/datasets` end to end on SQLite and PostgreSQL: rows from log filters and uploads,
feedback scores and fan-out choices turned into preference pairs, splits, row edits, key
scoping, and every exported line checked against its format (datasets/formats.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from crossroads.datasets.formats import check_line
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import OTHER_KEY, flush_log
from tests.datasets_support import BACKENDS, call, chat, served_gateway

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    fake_upstream: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedApp]:
    with served_gateway(request.param, fake_upstream, tmp_path_factory.mktemp("ds")) as g:
        yield g


def _dataset(served: ServedApp, key: str | None = None, **body: Any) -> dict[str, Any]:
    kwargs = {"key": key} if key else {}
    response = call(served, "POST", "/v1/datasets", json={"name": "t", **body}, **kwargs)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def _export(served: ServedApp, dataset_id: str, format: str, **params: str) -> list[Any]:
    response = call(
        served, "GET", f"/v1/datasets/{dataset_id}/export", params={"format": format, **params}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    assert response.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    for line in lines:
        assert check_line(format, line) == [], line
    return lines


def _add_from_logs(served: ServedApp, dataset_id: str, **filters: str) -> dict[str, Any]:
    flush_log(served)
    response = call(served, "POST", f"/v1/datasets/{dataset_id}/rows", json={"from_logs": filters})
    assert response.status_code == 200, response.text
    added: dict[str, Any] = response.json()
    return added


def test_rows_from_a_log_filter_export_as_valid_sft_with_tools(served: ServedApp) -> None:
    run = uuid.uuid4().hex[:8]
    chat(served, tags=[run], messages=[{"role": "user", "content": "say hi"}])
    chat(
        served,
        tags=[run],
        model="tool",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    chat(served, tags=["other"])  # not matched
    dataset = _dataset(served)
    assert _add_from_logs(served, dataset["id"], tags=run)["added"] == 2
    lines = _export(served, dataset["id"], "openai")
    assert len(lines) == 2
    with_tools = [line for line in lines if "tools" in line]
    assert with_tools and with_tools[0]["tools"] == [WEATHER_TOOL]
    assert with_tools[0]["messages"][-1]["tool_calls"][0]["function"]["name"] == "weather"
    plain = next(line for line in lines if "tools" not in line)
    assert plain["messages"] == [
        {"role": "user", "content": "say hi"},
        {"role": "assistant", "content": "say hi"},  # the fake echoes
    ]


def test_feedback_scores_make_preference_pairs_in_both_formats(served: ServedApp) -> None:
    run = uuid.uuid4().hex[:8]
    prompt = [{"role": "user", "content": f"question {run}"}]
    good = chat(served, tags=[run], model="fixed", messages=prompt)
    bad = chat(served, tags=[run], model="echo", messages=prompt)
    flush_log(served)
    for log_id, score in ((good, 1), (bad, 0)):
        rated = call(served, "POST", "/v1/feedback", json={"log_id": log_id, "score": score})
        assert rated.status_code == 200, rated.text
    dataset = _dataset(served)
    _add_from_logs(served, dataset["id"], tags=run)
    for format in ("openai-dpo", "together-dpo"):
        (pair,) = _export(served, dataset["id"], format)
        assert pair["input"]["messages"] == prompt
        assert pair["preferred_output"][0]["content"] == "Hello from the fake upstream."
        assert pair["non_preferred_output"][0]["content"] == f"question {run}"
    (trl,) = _export(served, dataset["id"], "trl-dpo")
    assert trl["prompt"] == prompt
    assert trl["chosen"][0]["content"] == "Hello from the fake upstream."
    assert trl["rejected"][0]["content"] == f"question {run}"


def test_fan_out_choices_make_pairs_with_the_preferred_choice(served: ServedApp) -> None:
    run = uuid.uuid4().hex[:8]
    prompt = [{"role": "user", "content": f"compare {run}"}]
    log_id = chat(served, tags=[run], model="fixed,echo", messages=prompt)
    flush_log(served)
    patched = call(
        served, "PATCH", f"/v1/logs/{log_id}", json={"metadata": {"preferred_choice": "1"}}
    )
    assert patched.status_code == 200, patched.text
    dataset = _dataset(served)
    _add_from_logs(served, dataset["id"], tags=run)
    (pair,) = _export(served, dataset["id"], "openai-dpo")
    assert pair["preferred_output"][0]["content"] == f"compare {run}"
    assert pair["non_preferred_output"][0]["content"] == "Hello from the fake upstream."


def test_upload_split_edit_delete_and_pruning(served: ServedApp) -> None:
    system = {"role": "system", "content": "You are Acme's assistant. Be brief."}
    lines: list[dict[str, Any]] = [
        {
            "messages": [
                system,
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(40)
    ]
    lines.append(
        {
            "input": {"messages": [{"role": "user", "content": "pick"}]},
            "preferred_output": [{"role": "assistant", "content": "good"}],
            "non_preferred_output": [{"role": "assistant", "content": "bad"}],
        }
    )
    body = b"\n".join(orjson.dumps(line) for line in lines)
    rules = [{"name": "acme", "pattern": "You are Acme's assistant. "}]
    dataset = _dataset(served, test_fraction=0.25, seed=7, pruning=rules)
    upload = call(
        served,
        "POST",
        f"/v1/datasets/{dataset['id']}/rows",
        content=body,
        headers={
            "content-type": "application/jsonl",
            "authorization": "Bearer sk-test-0123456789abcdef",
        },
    )
    assert upload.status_code == 200, upload.text
    counts = upload.json()["rows"]
    assert counts["train"] + counts["test"] == 41 and 3 <= counts["test"] <= 20
    # deterministic: the same seed gives the same split again, another seed another one
    first = _export(served, dataset["id"], "openai", split="test")
    again = call(
        served,
        "POST",
        f"/v1/datasets/{dataset['id']}/split",
        json={"test_fraction": 0.25, "seed": 7},
    )
    assert again.json()["rows"] == counts
    assert _export(served, dataset["id"], "openai", split="test") == first
    other = call(
        served,
        "POST",
        f"/v1/datasets/{dataset['id']}/split",
        json={"test_fraction": 0.25, "seed": 8},
    )
    assert other.status_code == 200
    assert _export(served, dataset["id"], "openai", split="test") != first
    # pruning: the named string is gone from every exported row
    exported = _export(served, dataset["id"], "openai")
    systems = [
        line["messages"][0]["content"]
        for line in exported
        if line["messages"][0]["role"] == "system"
    ]
    assert systems and all(text == "Be brief." for text in systems)
    assert len(_export(served, dataset["id"], "openai-dpo")) == 1
    # row edit and delete
    page = call(served, "GET", f"/v1/datasets/{dataset['id']}/rows", params={"limit": 2}).json()
    assert page["has_more"] and len(page["data"]) == 2
    row_id = page["data"][0]["id"]
    edited = call(
        served,
        "PATCH",
        f"/v1/datasets/{dataset['id']}/rows/{row_id}",
        json={"output": {"role": "assistant", "content": "edited"}, "split": "test"},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["output"]["content"] == "edited" and edited.json()["split"] == "test"
    deleted = call(served, "DELETE", f"/v1/datasets/{dataset['id']}/rows/{row_id}")
    assert deleted.status_code == 200
    gone = call(served, "DELETE", f"/v1/datasets/{dataset['id']}/rows/{row_id}")
    assert gone.status_code == 404
    assert (
        call(served, "GET", f"/v1/datasets/{dataset['id']}").json()["rows"]["train"]
        + call(served, "GET", f"/v1/datasets/{dataset['id']}").json()["rows"]["test"]
        == 40
    )


def test_no_cross_key_access(served: ServedApp) -> None:
    dataset = _dataset(served, key=OTHER_KEY)
    path = f"/v1/datasets/{dataset['id']}"
    assert call(served, "GET", path, key=OTHER_KEY).status_code == 200
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/export"), ("GET", "/rows")):
        response = call(served, method, path + suffix)  # the main key, even with logs = "all"
        assert response.status_code == 404, (method, suffix)
        assert response.json()["error"]["code"] == "dataset_not_found"
    mine = [d["id"] for d in call(served, "GET", "/v1/datasets").json()["data"]]
    assert dataset["id"] not in mine
    # rows from the log are only the key's own records
    run = uuid.uuid4().hex[:8]
    chat(served, tags=[run])  # the main key's record
    assert _add_from_logs_as(served, dataset["id"], OTHER_KEY, tags=run) == 0
    assert call(served, "DELETE", path, key=OTHER_KEY).status_code == 200
    assert call(served, "GET", path, key=OTHER_KEY).status_code == 404


def _add_from_logs_as(served: ServedApp, dataset_id: str, key: str, **filters: str) -> int:
    flush_log(served)
    response = call(
        served, "POST", f"/v1/datasets/{dataset_id}/rows", key=key, json={"from_logs": filters}
    )
    assert response.status_code == 200, response.text
    added: int = response.json()["added"]
    return added


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs", "code"),
    [
        ("POST", "", {"json": {}}, None),
        ("POST", "", {"json": {"name": "x", "test_fraction": 2}}, None),
        (
            "POST",
            "",
            {"json": {"name": "x", "pruning": [{"name": "r", "pattern": "(", "regex": True}]}},
            None,
        ),
        ("POST", "", {"content": b"[1]"}, "invalid_value"),
        ("POST", "/rows", {"json": {"from_logs": {"colour": "red"}}}, "unknown_parameter"),
        (
            "POST",
            "/rows",
            {"content": b'{"messages": []}', "headers": {"content-type": "application/jsonl"}},
            "invalid_jsonl",
        ),
        (
            "POST",
            "/rows",
            {"content": b"not json", "headers": {"content-type": "application/jsonl"}},
            "invalid_jsonl",
        ),
        ("GET", "/export?format=csv", {}, None),
        ("GET", "/export?fromat=openai", {}, "unknown_parameter"),
        ("GET", "/rows?page=2", {}, "unknown_parameter"),
        ("GET", "/rows?limit=0", {}, None),
        ("PATCH", "/rows/none", {"json": {"score": 0.5}}, "row_not_found"),
        ("PATCH", "/rows/none", {"json": {"split": "validation"}}, None),
        ("PATCH", "/rows/FIRST", {"json": {"output": {"role": "user", "content": "x"}}}, None),
        ("PATCH", "/rows/FIRST", {"json": {"messages": [{"role": "robot"}]}}, None),
    ],
)
def test_bad_input_is_a_4xx_envelope(
    served: ServedApp, method: str, suffix: str, kwargs: dict[str, Any], code: str | None
) -> None:
    base = (
        "/v1/datasets"
        if method == "POST" and suffix == ""
        else f"/v1/datasets/{_dataset(served)['id']}"
    )
    kwargs = dict(kwargs)  # the parameters are shared between backends
    edits_a_row = "FIRST" in suffix
    if edits_a_row:  # a row that exists
        row = {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        }
        dataset_id = base.rsplit("/", 1)[1]
        added = call(
            served,
            "POST",
            f"/v1/datasets/{dataset_id}/rows",
            content=orjson.dumps(row),
            headers={"content-type": "application/jsonl"},
        )
        assert added.status_code == 200, added.text
        rows = call(served, "GET", f"/v1/datasets/{dataset_id}/rows").json()["data"]
        suffix = suffix.replace("FIRST", rows[0]["id"])
    headers = {"authorization": "Bearer sk-test-0123456789abcdef", **kwargs.pop("headers", {})}
    response = httpx.request(
        method, f"{served.url}{base}{suffix}", headers=headers, timeout=30, **kwargs
    )
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if edits_a_row:
        assert response.status_code == 400 and "not valid" in error["message"], error
