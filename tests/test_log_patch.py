"""`PATCH /v1/logs/{id}` and `PATCH /v1/logs?filters`: metadata and tags edited after the
fact, on SQLite and PostgreSQL, scoped to what the key may read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from crossroads.storage.log_edits import LogEdit
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import OTHER_KEY
from tests.datasets_support import BACKENDS, call, chat, served_gateway


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    fake_upstream: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedApp]:
    with served_gateway(request.param, fake_upstream, tmp_path_factory.mktemp("patch")) as g:
        yield g


def test_edit_merges_metadata_and_edits_tags() -> None:
    edit = LogEdit(metadata={"a": "1", "gone": None}, add_tags=["x", "y"], remove_tags=["old"])
    assert edit.apply({"gone": "v", "keep": "k"}, ["old", "x"]) == (
        {"keep": "k", "a": "1"},
        ["x", "y"],
    )
    assert LogEdit(set_tags=[]).apply(None, ["a"]) == (None, None)


def test_patch_one_record(served: ServedApp) -> None:
    log_id = chat(served)
    response = call(
        served,
        "PATCH",
        f"/v1/logs/{log_id}",
        json={"metadata": {"label": "golden"}, "add_tags": ["reviewed"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"label": "golden"}
    assert response.json()["tags"] == ["reviewed"]
    again = call(served, "PATCH", f"/v1/logs/{log_id}", json={"metadata": {"label": None}})
    assert again.json()["metadata"] is None
    assert again.json()["tags"] == ["reviewed"]
    listed = call(served, "GET", "/v1/logs?tags=reviewed").json()["data"]
    assert log_id in [r["id"] for r in listed]


def test_bulk_patch_edits_every_match_and_nothing_else(served: ServedApp) -> None:
    run = uuid.uuid4().hex[:8]
    tagged = [chat(served, tags=[f"batch-{run}"]) for _ in range(3)]
    untouched = chat(served)
    response = call(served, "PATCH", f"/v1/logs?tags=batch-{run}", json={"metadata": {"run": run}})
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 3
    found = call(served, "GET", f"/v1/logs?metadata.run={run}").json()["data"]
    assert sorted(r["id"] for r in found) == sorted(tagged)
    assert call(served, "GET", f"/v1/logs/{untouched}").json()["metadata"] is None


def test_bulk_patch_is_scoped_to_the_key(served: ServedApp) -> None:
    run = uuid.uuid4().hex[:8]
    mine = chat(served, key=OTHER_KEY, tags=[f"scope-{run}"])
    theirs = chat(served, tags=[f"scope-{run}"])  # the main key's
    response = call(
        served, "PATCH", f"/v1/logs?tags=scope-{run}", key=OTHER_KEY, json={"add_tags": ["seen"]}
    )
    assert response.json()["updated"] == 1
    assert "seen" in call(served, "GET", f"/v1/logs/{mine}").json()["tags"]
    assert "seen" not in call(served, "GET", f"/v1/logs/{theirs}").json()["tags"]
    refused = call(served, "PATCH", f"/v1/logs/{theirs}", key=OTHER_KEY, json={"add_tags": ["x"]})
    assert refused.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/logs", {"add_tags": ["x"]}, 400, "missing_filter"),
        ("/v1/logs?limit=5&model=echo", {"add_tags": ["x"]}, 400, "unknown_parameter"),
        ("/v1/logs?model=echo", {}, 400, None),
        ("/v1/logs?model=echo", {"metadata": {"k": 3}}, 400, None),
        ("/v1/logs?model=echo", {"request": {}}, 400, None),
        ("/v1/logs?colour=red", {"add_tags": ["x"]}, 400, "unknown_parameter"),
        ("/v1/logs/nope", {"add_tags": ["x"]}, 404, "log_not_found"),
    ],
)
def test_bad_edits_are_400s_naming_the_problem(
    served: ServedApp, path: str, body: object, status: int, code: str | None
) -> None:
    response = call(served, "PATCH", path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
