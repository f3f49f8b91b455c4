"""Feedback on logged answers: the store (SQLite and PostgreSQL), `POST /v1/feedback` end to
end through a served gateway and the OpenAI SDK, the join that turns rated traffic into
router rows, and `crossroads router train --from-log`.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import OpenAI
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from crossroads.cli import app as cli
from crossroads.learned import LabelledRow, QualityRouter
from crossroads.learned.from_log import LOG_SOURCE, feedback_rows, request_prompt
from crossroads.storage.database import create_engine
from crossroads.storage.feedback_store import COMMENT_MAX_CHARS, FeedbackStore
from crossroads.storage.log_store import LogStore
from crossroads.storage.records import LogRecord
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import (
    API_KEY,
    OTHER_KEY,
    flush_log,
    gateway_config,
    postgres_engine,
    running_gateway,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
runner = CliRunner()


# --- the store and the join (SQLite and PostgreSQL) -----------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
        await LogStore(sqlite).open()
        yield sqlite
        await sqlite.dispose()
    else:
        async for pg in postgres_engine("test_feedback"):
            await LogStore(pg).open()
            yield pg


def _answered(id: str, *, at: datetime = T0, **fields: Any) -> LogRecord:
    values: dict[str, Any] = {
        "model_requested": "router",
        "status_code": 200,
        "model_served": "fast",
        "request": {"model": "router", "messages": [{"role": "user", "content": f"q {id}"}]},
        "cost": 0.001,
        "completion_tokens": 12,
    }
    return LogRecord(id=id, created_at=at, **(values | fields))


async def test_store_keeps_every_score_and_lists_them_oldest_first(engine: AsyncEngine) -> None:
    store = FeedbackStore(engine)
    first = await store.add("log-1", 0.25, comment="meh ✓", key_id="main")
    second = await store.add("log-1", 1.0, key_id="other")
    await store.add("log-2", 0, key_id="main")
    assert first.id.startswith("fb_") and first.id != second.id
    assert first.created_at.tzinfo is UTC
    assert await store.list(log_id="log-1") == [first, second]
    assert [f.log_id for f in await store.list(key_id="main")] == ["log-1", "log-2"]
    assert (await store.list(log_id="log-2"))[0].score == 0.0
    assert await store.list(log_id="nothing") == []


@pytest.mark.parametrize(
    ("log_id", "score", "comment", "problem"),
    [
        ("x", 1.5, None, "score must be a number from 0 to 1"),
        ("x", -0.1, None, "score must be a number from 0 to 1"),
        ("x", math.nan, None, "score must be a number from 0 to 1"),
        ("x", True, None, "score must be a number from 0 to 1"),
        ("", 1.0, None, "log_id must be a non-empty string"),
        ("x", 1.0, "c" * (COMMENT_MAX_CHARS + 1), f"at most {COMMENT_MAX_CHARS} characters"),
        ("x", 1.0, "a\x00b", "NUL"),
    ],
)
async def test_store_refuses_bad_feedback(
    engine: AsyncEngine, log_id: str, score: float, comment: str | None, problem: str
) -> None:
    store = FeedbackStore(engine)
    with pytest.raises(ValueError, match=problem):
        await store.add(log_id, score, comment=comment)
    assert await store.list() == []


async def test_rated_traffic_becomes_router_rows(engine: AsyncEngine) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And times 3?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
    ]
    await LogStore(engine).write(
        [
            _answered(
                "rated",
                at=T0 + timedelta(seconds=1),
                model_served="smart",
                request={"model": "router", "messages": messages},
                cost=0.02,
                completion_tokens=40,
            ),
            _answered("simple", at=T0 + timedelta(seconds=2), cost=None, completion_tokens=None),
            _answered("old", at=T0 - timedelta(days=30)),
            _answered("not-stored", request=None),  # sent with store: false
            _answered("failed", status_code=502, error_code="upstream_error"),
            _answered("unrated"),
            _answered(
                "image-only",
                request={
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {}}]}
                    ]
                },
            ),
        ]
    )
    store = FeedbackStore(engine)
    await store.add("rated", 0.1)
    await store.add("rated", 0.9)  # the latest score counts
    await store.add("simple", 0.0)
    await store.add("old", 1.0)
    for log_id in ("not-stored", "failed", "image-only", "pruned-long-ago"):
        await store.add(log_id, 1.0)

    rows = await feedback_rows(engine)
    assert rows == [
        LabelledRow("q old", "fast", 1.0, 0.001, 12.0, LOG_SOURCE),
        LabelledRow("What is 2+2?\n\nAnd times 3?", "smart", 0.9, 0.02, 40.0, LOG_SOURCE),
        LabelledRow("q simple", "fast", 0.0, None, None, LOG_SOURCE),
    ]
    assert [r.prompt for r in await feedback_rows(engine, since=T0)] == [
        "What is 2+2?\n\nAnd times 3?",
        "q simple",
    ]
    naive = T0.replace(tzinfo=None) + timedelta(seconds=2)  # naive means UTC
    assert [r.prompt for r in await feedback_rows(engine, since=naive)] == ["q simple"]


def test_a_request_prompt_is_its_user_text() -> None:
    assert request_prompt([{"role": "user", "content": "hi"}]) == "hi"
    assert request_prompt(
        [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]},
            {"role": "tool", "content": "42", "tool_call_id": "t"},
            {"role": "user", "content": "b"},
        ]
    ) == ("a\n\nb")
    assert request_prompt([{"role": "user", "content": ""}]) is None
    assert request_prompt([{"role": "user", "content": None}, "junk", 3]) is None
    assert request_prompt("not messages") is None
    assert request_prompt(None) is None


# --- POST /v1/feedback through a served gateway ---------------------------------------------


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    """A gateway that writes its log only when asked (or at shutdown), so every record is
    still queued when the test rates it unless the test flushes first."""
    config = gateway_config(fake_upstream, tmp_path_factory.mktemp("feedback") / "log.db")
    config = config.model_copy(
        update={"storage": config.storage.model_copy(update={"flush_interval": 60.0})}
    )
    with running_gateway(config) as gateway:
        yield gateway


def _sdk(served: ServedApp, key: str = API_KEY) -> OpenAI:
    return OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def sdk(served: ServedApp) -> Iterator[OpenAI]:
    with _sdk(served) as client:
        yield client


def _ask(sdk: OpenAI, prompt: str, *, model: str = "fixed") -> str:
    """Ask through the OpenAI SDK; the answer's log id."""
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    raw.parse()
    log_id = raw.headers["x-crossroads-log-id"]
    assert log_id
    return log_id


@pytest.fixture(scope="module")
def http(served: ServedApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        yield client


def _rate(http: httpx.Client, body: Any, *, key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(
        "/v1/feedback", content=content, headers={"Content-Type": "application/json", **headers}
    )


def _stored(served: ServedApp, log_id: str) -> list[Any]:
    store = FeedbackStore(served.app.state.crossroads.log_store.engine)
    return list(served.call(store.list(log_id=log_id)))


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.fixture(scope="module")
def answered(served: ServedApp, sdk: OpenAI) -> str:
    """The log id of one answer by the key `main`, already written to the log; the tests
    that use it all fail to rate it, so it never has feedback."""
    log_id = _ask(sdk, "a question for the bad-input tests")
    flush_log(served)
    return log_id


def test_rating_an_answer_at_once_before_the_log_is_flushed(
    served: ServedApp, http: httpx.Client, sdk: OpenAI
) -> None:
    writer = served.app.state.crossroads.log_writer
    log_id = _ask(sdk, "What is the capital of France?")
    assert writer.pending >= 1  # the record is still queued: nothing has written it yet
    response = _rate(http, {"log_id": log_id, "score": True, "comment": "right ✓"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "feedback" and body["id"].startswith("fb_")
    assert (body["log_id"], body["score"], body["comment"], body["key_id"]) == (
        log_id,
        1.0,
        "right ✓",
        "main",
    )
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert writer.pending == 0
    again = _rate(http, {"log_id": log_id, "score": 0.25})
    assert again.status_code == 200, again.text
    stored = _stored(served, log_id)
    assert [(f.id, f.score, f.comment) for f in stored] == [
        (body["id"], 1.0, "right ✓"),
        (again.json()["id"], 0.25, None),
    ]


def test_rating_races_the_background_writer(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    """With a writer flushing all the time, a lookup often runs while the record's batch is
    being written: still found, never a 404."""
    config = gateway_config(fake_upstream, tmp_path / "log.db")
    config = config.model_copy(
        update={"storage": config.storage.model_copy(update={"flush_interval": 0.001})}
    )
    with (
        running_gateway(config) as gateway,
        httpx.Client(base_url=gateway.url, timeout=10) as http,
        _sdk(gateway) as sdk,
    ):
        for n in range(30):
            response = _rate(http, {"log_id": _ask(sdk, f"race {n}"), "score": 1})
            assert response.status_code == 200, (n, response.text)


def test_score_false_means_zero(http: httpx.Client, sdk: OpenAI) -> None:
    response = _rate(http, {"log_id": _ask(sdk, "2 + 2?"), "score": False, "comment": None})
    assert response.status_code == 200, response.text
    assert response.json()["score"] == 0.0


def test_a_key_rates_only_what_it_may_read(
    served: ServedApp, http: httpx.Client, sdk: OpenAI
) -> None:
    mine = _ask(sdk, "main's question")
    with _sdk(served, OTHER_KEY) as other:
        theirs = _ask(other, "other's question")
    unknown = "0" * 32
    # `other` reads only its own records: main's is as absent as one that never existed.
    refused = _error(_rate(http, {"log_id": mine, "score": 1}, key=OTHER_KEY), 404)
    missing = _error(_rate(http, {"log_id": unknown, "score": 1}, key=OTHER_KEY), 404)
    assert refused["code"] == missing["code"] == "log_not_found"
    assert refused["param"] == "log_id"
    assert refused["message"] == f"No request log record with id '{mine}'."
    read = http.get(f"/v1/logs/{mine}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert read.status_code == 404
    assert _stored(served, mine) == []
    own = _rate(http, {"log_id": theirs, "score": 0.5}, key=OTHER_KEY)
    assert own.status_code == 200 and own.json()["key_id"] == "other"
    # `main` has logs = "all": it may rate every record.
    assert _rate(http, {"log_id": theirs, "score": 1}).status_code == 200
    assert [f.key_id for f in _stored(served, theirs)] == ["other", "main"]


def test_the_caller_must_authenticate(served: ServedApp, http: httpx.Client, answered: str) -> None:
    assert _error(_rate(http, {"log_id": answered, "score": 1}, key=None), 401)["code"] == (
        "missing_api_key"
    )
    wrong = _rate(http, {"log_id": answered, "score": 1}, key="sk-wrong-0123456789")
    assert _error(wrong, 401)["code"] == "invalid_api_key"
    assert _stored(served, answered) == []


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        (b"{not json", None, "invalid_json", "The request body is not valid JSON"),
        (b"", None, "invalid_json", "The request body is not valid JSON"),
        (b"[1, 2]", None, "invalid_value", "The request body must be a JSON object"),
        ({"log_id": "{id}"}, "score", "invalid_value", "Missing required parameter: 'score'."),
        ({"score": 1}, "log_id", "invalid_value", "Missing required parameter: 'log_id'."),
        (
            {"log_id": "{id}", "score": 1.5},
            "score",
            "invalid_value",
            "Invalid value for 'score': must be a number from 0 to 1, or true / false; got 1.5.",
        ),
        (
            {"log_id": "{id}", "score": "good"},
            "score",
            "invalid_value",
            "Invalid value for 'score': must be a number from 0 to 1, or true / false; "
            'got "good".',
        ),
        ({"log_id": "{id}", "score": None}, "score", "invalid_value", "got null."),
        ({"log_id": "{id}", "score": [1]}, "score", "invalid_value", "got an array."),
        ({"log_id": "{id}", "score": -1}, "score", "invalid_value", "got -1."),
        ({"log_id": 7, "score": 1}, "log_id", "invalid_value", "Invalid value for 'log_id'"),
        ({"log_id": "", "score": 1}, "log_id", "invalid_value", "Invalid value for 'log_id'"),
        (
            {"log_id": "{id}", "score": 1, "rating": 5},
            "rating",
            "unknown_parameter",
            "Unrecognized field: 'rating'. Feedback has: log_id, score, comment.",
        ),
        (
            {"log_id": "{id}", "score": 1, "comment": "c" * (COMMENT_MAX_CHARS + 1)},
            "comment",
            "invalid_value",
            f"at most {COMMENT_MAX_CHARS} characters",
        ),
        (
            {"log_id": "{id}", "score": 1, "comment": 3},
            "comment",
            "invalid_value",
            "Invalid value for 'comment'",
        ),
        (
            {"log_id": "{id}", "score": 1, "comment": "a\x00b"},
            "comment",
            "invalid_value",
            "must not contain NUL characters",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(
    served: ServedApp,
    http: httpx.Client,
    answered: str,
    body: Any,
    param: str | None,
    code: str,
    message: str,
) -> None:
    if isinstance(body, dict):
        body = {k: answered if v == "{id}" else v for k, v in body.items()}
    error = _error(_rate(http, body), 400)
    assert (error["param"], error["code"], error["type"]) == (
        param,
        code,
        "invalid_request_error",
    )
    assert message in error["message"]
    assert _stored(served, answered) == []


def test_an_unknown_log_id_is_a_404(http: httpx.Client) -> None:
    for log_id in ("f" * 32, "nul\x00id"):
        error = _error(_rate(http, {"log_id": log_id, "score": 1}), 404)
        assert (error["code"], error["param"]) == ("log_not_found", "log_id")


def test_an_oversized_body_is_a_413(served: ServedApp, http: httpx.Client, answered: str) -> None:
    body = {"log_id": answered, "score": 1, "comment": "x" * 70_000}
    assert _error(_rate(http, body), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no content-length: sent chunked
        yield json.dumps(body).encode()

    chunked = http.post(
        "/v1/feedback", content=chunks(), headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert _error(chunked, 413)["code"] == "request_too_large"
    assert _stored(served, answered) == []


def test_openapi_describes_feedback(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    operation = document["paths"]["/v1/feedback"]["post"]
    assert operation["operationId"] == "createFeedback"
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["log_id", "score"]
    assert set(schema["properties"]) == {"log_id", "score", "comment"}
    assert {"200", "400", "401", "404"} <= set(operation["responses"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(["log_id", "score", "comment", "extra"]), value=json_values)
def test_mangled_bodies_never_500(http: httpx.Client, field: str, value: Any) -> None:
    response = _rate(http, {"log_id": "f" * 32, "score": 1, field: value})
    assert response.status_code in {400, 404}, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# --- crossroads router train --from-log -----------------------------------------------------


def _config_file(path: Path, fake: FakeOpenAI, database: Path) -> Path:
    path.write_text(
        "\n".join(
            [
                "[storage]",
                f'database_url = "sqlite+aiosqlite:///{database}"',
                "[providers.fake]",
                f'base_url = "{fake.base_url}"',
                "[models.fixed]",
                'deployments = [{ provider = "fake", model = "fixed" }]',
            ]
        )
        + "\n"
    )
    return path


def test_router_trains_on_rated_traffic_and_files_together(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    database = tmp_path / "log.db"
    config_path = _config_file(tmp_path / "crossroads.toml", fake_upstream, database)
    with (
        running_gateway(gateway_config(fake_upstream, database)) as gateway,
        httpx.Client(base_url=gateway.url, timeout=10) as http,
        _sdk(gateway) as sdk,
    ):
        for n in range(12):
            for model, score in (("fixed", n % 2), ("echo", 1)):
                log_id = _ask(sdk, f"Question {n}: what is {n} + {n}?", model=model)
                response = _rate(http, {"log_id": log_id, "score": score})
                assert response.status_code == 200, response.text
        # Never rated, and not stored: neither is learned from.
        sdk.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "x"}])
        stored_not = sdk.chat.completions.with_raw_response.create(
            model="fixed", messages=[{"role": "user", "content": "private"}], store=False
        )
        private = _rate(http, {"log_id": stored_not.headers["x-crossroads-log-id"], "score": 1})
        assert private.status_code == 200
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        "\n".join(
            json.dumps({"prompt": f"Extra prompt {n}?", "model": "curated", "score": n % 3 / 2})
            for n in range(10)
        )
    )
    out = tmp_path / "router.npz"
    result = runner.invoke(
        cli,
        [
            "router",
            "train",
            "--from-log",
            "--config",
            str(config_path),
            "--data",
            str(extra),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "24 rated requests from the request log" in result.output
    router = QualityRouter.load(out)
    assert router.models == ["curated", "echo", "fixed"]
    assert router.summary["rows_per_model"] == {"curated": 10, "echo": 12, "fixed": 12}
    assert router.summary["mean_score"]["fixed"] == pytest.approx(0.5)

    log_only = ["router", "train", "--from-log", "-c", str(config_path), "--out", str(out)]
    since = runner.invoke(cli, [*log_only, "--since", "2999-01-01"])
    assert since.exit_code == 2
    assert "no rated requests in the request log" in since.output
    assert "since 2999-01-01" in since.output


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--out", "r.npz"], "nothing to train on"),
        (["--out", "r.npz", "--data", "x.jsonl", "--since", "2025-01-01"], "--from-log only"),
        (["--out", "r.npz", "--from-log", "--since", "yesterday"], "expected an ISO 8601"),
    ],
)
def test_router_train_refuses_bad_log_options(args: list[str], problem: str) -> None:
    result = runner.invoke(cli, ["router", "train", *args])
    assert result.exit_code == 2
    assert problem in result.output


def test_router_train_from_an_empty_log_says_so(tmp_path: Path) -> None:
    config_path = tmp_path / "c.toml"
    config_path.write_text(f'[storage]\ndatabase_url = "sqlite:///{tmp_path / "empty.db"}"\n')
    result = runner.invoke(
        cli, ["router", "train", "--from-log", "-c", str(config_path), "--out", "r.npz"]
    )
    assert result.exit_code == 2
    assert "no rated requests in the request log at sqlite+aiosqlite:///" in result.output
    assert "POST /v1/feedback" in result.output
