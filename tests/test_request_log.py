"""The request log holds exactly what the gateway served: checked through the API and the DB."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from openai import OpenAI

from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY, flush_log, gateway_config, running_gateway

USER = [{"role": "user", "content": "Log me please"}]


def _auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create(client: OpenAI, **kwargs: Any) -> tuple[str, Any]:
    """Make a request; return its log id (from the response header) and the parsed body."""
    kwargs.setdefault("messages", USER)
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    return raw.headers["x-crossroads-log-id"], raw.parse()


def _record(gateway: ServedApp, log_id: str, key: str = API_KEY) -> dict[str, Any]:
    flush_log(gateway)
    response = httpx.get(f"{gateway.url}/v1/logs/{log_id}", headers=_auth(key))
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def test_a_served_request_is_logged_with_everything(client: OpenAI, gateway: ServedApp) -> None:
    log_id, completion = _create(
        client,
        model="fixed",
        user="user-7",
        metadata={"team": "search", "env": "prod"},
        extra_body={"session_id": "sess-1", "extra": {"country": "NL"}},
        extra_headers={"x-crossroads-tags": "beta, eval"},
    )
    record = _record(gateway, log_id)
    assert record["key_id"] == "main"
    assert record["model_requested"] == "fixed"
    assert record["model_served"] == "fixed"
    assert record["provider"] == "fake"
    assert record["upstream_model"] == "fixed"
    assert record["status_code"] == 200
    assert record["error_code"] is None
    assert record["stream"] is False
    assert record["request"]["messages"] == USER
    assert record["request"]["session_id"] == "sess-1"
    assert (
        record["response"]["choices"][0]["message"]["content"]
        == completion.choices[0].message.content
    )
    usage = completion.usage.model_extra
    assert record["prompt_tokens"] == completion.usage.prompt_tokens
    assert record["completion_tokens"] == completion.usage.completion_tokens
    assert record["cost"] == pytest.approx(usage["cost"])
    assert record["prompt_characters"] == usage["prompt_characters"]
    assert record["response_characters"] == usage["response_characters"]
    assert record["latency_ms"] > 0
    assert record["user"] == "user-7"
    assert record["metadata"] == {"team": "search", "env": "prod"}
    assert record["session_id"] == "sess-1"
    assert record["extra"] == {"country": "NL"}
    assert record["tags"] == ["beta", "eval"]


def test_session_id_comes_from_the_header_and_the_body_wins(
    client: OpenAI, gateway: ServedApp
) -> None:
    header_only, _ = _create(client, model="fixed", extra_headers={"x-session-id": "from-header"})
    both, _ = _create(
        client,
        model="fixed",
        extra_headers={"x-session-id": "from-header"},
        extra_body={"session_id": "from-body"},
    )
    assert _record(gateway, header_only)["session_id"] == "from-header"
    assert _record(gateway, both)["session_id"] == "from-body"


def test_store_false_keeps_accounting_but_no_bodies(client: OpenAI, gateway: ServedApp) -> None:
    log_id, completion = _create(client, model="fixed", store=False)
    record = _record(gateway, log_id)
    assert record["request"] is None and record["response"] is None
    assert record["cost"] == pytest.approx(completion.usage.model_extra["cost"])
    assert record["completion_tokens"] == completion.usage.completion_tokens


def test_secrets_never_reach_the_log(client: OpenAI, gateway: ServedApp, tmp_path: Path) -> None:
    raw = client.chat.completions.with_raw_response
    served = raw.create(model="byok", messages=USER, extra_body={"openai_api_key": "sk-upstream"})  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError) as caught:
        raw.create(model="byok", messages=USER, extra_body={"openai_api_key": "sk-secret-byok"})  # type: ignore[arg-type]
    for log_id in (
        served.headers["x-crossroads-log-id"],
        caught.value.response.headers["x-crossroads-log-id"],
    ):
        record = _record(gateway, log_id)
        assert "openai_api_key" not in record["request"]
        assert "sk-secret-byok" not in str(record)
        assert "sk-upstream" not in str(record)
        assert API_KEY not in str(record)


def test_a_stream_is_logged_with_ttft_and_the_assembled_answer(
    client: OpenAI, gateway: ServedApp
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="echo",
        messages=[{"role": "user", "content": "alpha beta gamma"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    record = _record(gateway, raw.headers["x-crossroads-log-id"])
    assert record["stream"] is True
    assert record["status_code"] == 200
    assert record["response"]["choices"][0]["message"]["content"] == "alpha beta gamma"
    assert 0 < record["ttft_ms"] <= record["latency_ms"]
    assert record["cost"] == pytest.approx(chunks[-1].usage.model_extra["cost"])


def test_a_stream_cut_mid_way_is_logged_as_failed_with_the_partial_text(
    gateway: ServedApp,
) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers=_auth(),
        json={"model": "drop", "messages": USER, "stream": True},
    ) as response:
        response.read()
        log_id = response.headers["x-crossroads-log-id"]
    record = _record(gateway, log_id)
    assert record["status_code"] == 502
    assert record["error_code"] == "upstream_stream_interrupted"
    partial = record["response"]["choices"][0]["message"]["content"]
    assert partial and "Hello from the fake upstream.".startswith(partial)


def test_a_client_that_disconnects_mid_stream_is_logged_and_frees_the_upstream(
    gateway: ServedApp,
) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers=_auth(),
        json={"model": "slow-stream", "messages": USER, "stream": True},
    ) as response:
        log_id = response.headers["x-crossroads-log-id"]
        first = next(response.iter_raw())
        assert first.startswith(b"data: ")
    # The client has hung up after one event of ten; the gateway notices on its next send.
    deadline = time.monotonic() + 5
    while True:
        flush_log(gateway)
        found = httpx.get(f"{gateway.url}/v1/logs/{log_id}", headers=_auth())
        if found.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    record = found.json()
    assert record["status_code"] == 499
    assert record["error_code"] == "client_closed_request"
    assert record["latency_ms"] < 2500  # it did not wait for the whole answer


def test_a_client_that_gives_up_on_a_plain_request_cancels_the_upstream_call(
    gateway: ServedApp, fake_upstream: FakeOpenAI
) -> None:
    log_id = None
    with contextlib.suppress(httpx.TimeoutException):
        httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers=_auth(),
            json={"model": "slow", "messages": USER, "metadata": {"case": "gives-up"}},
            timeout=0.1,
        )
    deadline = time.monotonic() + 5
    while log_id is None:
        flush_log(gateway)
        listed = httpx.get(
            f"{gateway.url}/v1/logs", params={"metadata.case": "gives-up"}, headers=_auth()
        ).json()["data"]
        if listed:
            log_id = listed[0]["id"]
        assert time.monotonic() < deadline, "the abandoned request was never logged"
        time.sleep(0.05)
    record = _record(gateway, log_id)
    assert record["status_code"] == 499
    assert record["error_code"] == "client_closed_request"
    assert record["latency_ms"] < 300  # cancelled, not waited out (the upstream takes 300 ms)


def test_failures_are_logged_with_status_and_error(client: OpenAI, gateway: ServedApp) -> None:
    for model, status, code in [
        ("no-such-model", 404, "model_not_found"),
        ("error-503", 503, "upstream_error"),
    ]:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
        record = _record(gateway, caught.value.response.headers["x-crossroads-log-id"])
        assert record["status_code"] == status
        assert record["error_code"] == code
        assert record["error_message"]


def test_list_filters_and_pagination(client: OpenAI, gateway: ServedApp) -> None:
    marker = f"m-{time.time_ns()}"
    ids = [
        _create(client, model="echo", metadata={"run": marker}, extra_body={"session_id": marker})[
            0
        ]
        for _ in range(5)
    ]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="missing",
            messages=USER,
            metadata={"run": marker},
            extra_body={"session_id": marker},
        )
    flush_log(gateway)
    base = f"{gateway.url}/v1/logs"

    def page(**params: Any) -> dict[str, Any]:
        response = httpx.get(base, params=params, headers=_auth())
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    by_session = page(session_id=marker)
    assert len(by_session["data"]) == 6
    assert [r["id"] for r in by_session["data"] if r["status_code"] == 200] == ids[::-1]
    assert len(page(**{"metadata.run": marker, "model": "echo"})["data"]) == 5
    assert len(page(session_id=marker, status="error")["data"]) == 1
    assert len(page(session_id=marker, status="404")["data"]) == 1
    first = page(session_id=marker, limit=2)
    assert first["has_more"] is True and len(first["data"]) == 2
    second = page(session_id=marker, limit=2, before=first["next_before"])
    assert {r["id"] for r in first["data"]}.isdisjoint(r["id"] for r in second["data"])
    newest = by_session["data"][0]["created_at"]
    assert page(session_id=marker, start=newest)["data"][0]["created_at"] == newest
    assert page(session_id=marker, end="2000-01-01T00:00:00Z")["data"] == []


def test_bad_log_filters_are_400(gateway: ServedApp) -> None:
    for params in ({"limit": "0"}, {"start": "yesterday"}, {"status": "weird"}):
        response = httpx.get(f"{gateway.url}/v1/logs", params=params, headers=_auth())
        assert response.status_code == 400
        assert response.json()["error"]["param"] in params


def test_a_key_reads_only_its_own_records_unless_allowed_all(
    client: OpenAI, gateway: ServedApp
) -> None:
    mine, _ = _create(client, model="fixed")
    with OpenAI(base_url=f"{gateway.url}/v1", api_key=OTHER_KEY, max_retries=0) as other:
        theirs, _ = _create(other, model="fixed")
    flush_log(gateway)
    assert httpx.get(f"{gateway.url}/v1/logs/{mine}", headers=_auth(OTHER_KEY)).status_code == 404
    assert _record(gateway, theirs, OTHER_KEY)["key_id"] == "other"
    listed = httpx.get(f"{gateway.url}/v1/logs", headers=_auth(OTHER_KEY)).json()["data"]
    assert {r["key_id"] for r in listed} == {"other"}
    assert _record(gateway, theirs)["key_id"] == "other"  # `main` has logs = "all"


def test_unknown_log_id_is_404(gateway: ServedApp) -> None:
    response = httpx.get(f"{gateway.url}/v1/logs/nope", headers=_auth())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "log_not_found"


def test_the_database_holds_exactly_what_was_served(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """A fresh gateway: N requests in, N rows on disk after shutdown, costs equal."""
    database = tmp_path / "exact.db"
    costs = []
    with running_gateway(gateway_config(fake_upstream, database)) as served:
        with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as sdk:
            for i in range(20):
                completion = sdk.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": f"number {i}"}]
                )
                costs.append(completion.usage.model_extra["cost"])  # type: ignore[union-attr]
    # The gateway has shut down: its writer must have flushed everything on the way out.
    sync = sa.create_engine(f"sqlite:///{database}")
    try:
        with sync.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT cost, status_code, request FROM request_log ORDER BY created_at")
            ).all()
    finally:
        sync.dispose()
    assert len(rows) == 20
    assert sum(r.cost for r in rows) == pytest.approx(sum(costs), abs=1e-12)
    assert all(r.status_code == 200 for r in rows)
