"""Bad input never breaks shared state: every caller mistake is a 400 before any upstream
call, never counted by a circuit breaker, and whatever a request held (its key's parallel
slot, its budget reservation, its log record) is given back or written on every path."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI

from crossroads.protocol.json_body import MAX_JSON_DEPTH
from crossroads.providers.base import UpstreamCall
from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, flush_log, gateway_config, running_gateway

MASTER = "mk-bad-input-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("bad-input") / "gateway.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(gateway_config(fake_upstream, database)) as gateway:
            yield gateway


def new_key(served: ServedApp, **settings: Any) -> str:
    response = httpx.post(
        f"{served.url}/admin/keys",
        json={"name": "bad-input", **settings},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert response.status_code == 200, response.text
    secret: str = response.json()["key"]
    return secret


def post(
    served: ServedApp, body: Any, key: str = API_KEY, path: str = "/v1/chat/completions"
) -> httpx.Response:
    """POST `body`: a JSON value, or `bytes` sent as they are (documents deeper than any
    JSON encoder will write)."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(
        f"{served.url}{path}",
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


def with_deep_field(body: dict[str, Any], field: str, depth: int) -> bytes:
    """`body` with `field` set to objects nested `depth` levels deep, as raw JSON."""
    head = orjson.dumps(body)[:-1]
    return head + f',"{field}":'.encode() + b'{"x":' * depth + b'"leaf"' + b"}" * depth + b"}"


def breaker_states(served: ServedApp) -> dict[str, str]:
    stats = httpx.get(
        f"{served.url}/v1/providers/stats", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    return {key: row["breaker"]["state"] for key, row in stats["deployments"].items()}


def assert_error(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error


# --- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 1000, 5000])
def test_deep_nesting_anywhere_is_a_400_at_parse_time(
    served: ServedApp, fake_upstream: FakeOpenAI, depth: int
) -> None:
    before = len(fake_upstream.requests)
    for field in ("metadata", "unknown_field", "extra"):
        body = with_deep_field({"model": "echo", "messages": HELLO}, field, depth)
        response = post(served, body)
        assert_error(response, 400, "json_too_deep")
        assert str(MAX_JSON_DEPTH) in response.json()["error"]["message"]
    assert len(fake_upstream.requests) == before


def test_nesting_within_the_cap_still_reaches_the_upstream(
    served: ServedApp, fake_upstream: FakeOpenAI
) -> None:
    response = post(
        served, {"model": "echo", "messages": HELLO, "vendor_option": nested(MAX_JSON_DEPTH - 2)}
    )
    assert response.status_code == 200, response.text
    assert fake_upstream.requests[-1]["body"]["vendor_option"] == nested(MAX_JSON_DEPTH - 2)


def test_deep_admin_and_feedback_bodies_are_refused(served: ServedApp) -> None:
    admin = post(served, with_deep_field({"name": "deep"}, "metadata", 500), MASTER, "/admin/keys")
    assert_error(admin, 400, "json_too_deep")
    feedback = with_deep_field({"log_id": "x", "score": 1}, "metadata", 500)
    assert_error(post(served, feedback, path="/v1/feedback"), 400, "json_too_deep")
    listed = httpx.get(f"{served.url}/admin/keys", headers={"Authorization": f"Bearer {MASTER}"})
    assert listed.status_code == 200


def test_deep_bodies_leave_a_limited_keys_slot_and_budget_free(served: ServedApp) -> None:
    key = new_key(served, max_parallel_requests=1, max_budget=0.01)
    for _ in range(3):
        for stream in (False, True):
            body = {"model": "echo", "messages": HELLO, "stream": stream}
            deep = with_deep_field(body, "unknown_field", 300)
            assert_error(post(served, deep, key), 400, "json_too_deep")
    # One slot: a leaked one would make this a 429.
    body = {"model": "echo", "messages": HELLO, "max_tokens": 10}
    assert post(served, body, key).status_code == 200
    usage = httpx.get(f"{served.url}/admin/keys", headers={"Authorization": f"Bearer {MASTER}"})
    assert usage.status_code == 200


# --- strict types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("max_tokens", "10"),
        ("max_tokens", 10.0),
        ("max_completion_tokens", True),
        ("temperature", True),
        ("temperature", "0.5"),
        ("top_p", "1"),
        ("seed", "42"),
        ("n", "2"),
        ("stream", "yes"),
        ("stream", 1),
        ("logprobs", "true"),
        ("presence_penalty", False),
    ],
)
def test_loosely_typed_openai_parameters_are_400s_naming_the_field(
    served: ServedApp, fake_upstream: FakeOpenAI, param: str, value: Any
) -> None:
    before = len(fake_upstream.requests)
    response = post(served, {"model": "echo", "messages": HELLO, param: value})
    assert_error(response, 400, "invalid_value", param)
    assert param in response.json()["error"]["message"]
    assert len(fake_upstream.requests) == before
    assert set(breaker_states(served).values()) == {"closed"}


def test_integers_are_still_numbers(served: ServedApp) -> None:
    response = post(served, {"model": "echo", "messages": HELLO, "temperature": 1, "top_p": 1})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("key", ["sk-€uro", "sk-with space", "sk-\u00e9t\u00e9", "sk-\u4e2d"])
def test_a_caller_key_that_no_header_can_carry_is_a_400(
    served: ServedApp, fake_upstream: FakeOpenAI, key: str
) -> None:
    before = len(fake_upstream.requests)
    for _ in range(6):  # more than the breaker's failure threshold
        response = post(served, {"model": "byok", "messages": HELLO, "openai_api_key": key})
        assert_error(response, 400, "invalid_value", "openai_api_key")
    assert len(fake_upstream.requests) == before
    assert set(breaker_states(served).values()) == {"closed"}


def test_every_unsupported_parameter_is_named(served: ServedApp) -> None:
    body = {
        "model": "echo",
        "messages": HELLO,
        "plugins": [],
        "provider": {"quantizations": ["int8"], "data_collection": "deny"},
    }
    response = post(served, body)
    assert_error(response, 400, "unsupported_parameter", "plugins")
    message = response.json()["error"]["message"]
    names = ("plugins", "provider.quantizations", "provider.data_collection")
    assert all(f"'{name}'" in message for name in names)


# --- secrets ---------------------------------------------------------------------------------


def test_a_refused_caller_key_is_the_callers_error_and_never_the_deployments(
    served: ServedApp,
) -> None:
    for _ in range(6):  # more than the breaker's failure threshold
        refused = post(served, {"model": "byok", "messages": HELLO, "openai_api_key": "sk-bad"})
        assert_error(refused, 401, "invalid_api_key", "openai_api_key")
    stats = httpx.get(
        f"{served.url}/v1/providers/stats", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()["deployments"]
    for row in stats.values():
        assert row["breaker"]["state"] == "closed"
        assert row["breaker"]["consecutive_failures"] == 0


def test_upstream_errors_quoting_a_key_never_show_or_store_it(served: ServedApp) -> None:
    caller_key = "sk-caller-secret-4242"
    refused = post(served, {"model": "byok", "messages": HELLO, "openai_api_key": caller_key})
    assert refused.status_code == 401
    configured = post(served, {"model": "error-401", "messages": HELLO})
    assert configured.status_code == 502
    streamed = post(served, {"model": "error-401", "messages": HELLO, "stream": True})
    assert streamed.status_code == 502
    for response in (refused, configured, streamed):
        message = response.json()["error"]["message"]
        assert "[redacted]" in message
        assert caller_key not in message and "sk-upstream" not in message
    flush_log(served)
    for response in (refused, configured, streamed):
        log_id = response.headers["x-crossroads-log-id"]
        record = httpx.get(
            f"{served.url}/v1/logs/{log_id}", headers={"Authorization": f"Bearer {API_KEY}"}
        ).json()
        assert caller_key not in str(record) and "sk-upstream" not in str(record)


# --- limits on every path --------------------------------------------------------------------


def test_a_spent_periodic_budget_says_when_it_resets(served: ServedApp) -> None:
    key = new_key(served, max_budget=0.00001, budget_period="daily")
    response = post(served, {"model": "echo", "messages": HELLO, "max_tokens": 100}, key)
    assert_error(response, 429, "budget_exceeded")
    retry = int(response.headers["retry-after"])
    now = time.gmtime()
    to_midnight = 86400 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    assert abs(retry - to_midnight) <= 5


def test_a_budget_held_by_requests_in_flight_says_retry_soon(served: ServedApp) -> None:
    # The slow request reserves its bound; a second one does not fit beside it, but would
    # fit once the first settles at its (much lower) actual cost.
    key = new_key(served, max_budget=0.0015)
    body = {"model": "slow", "messages": HELLO, "max_tokens": 100}
    with httpx.Client(timeout=30) as http:
        first: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: first.append(
                http.post(
                    f"{served.url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
        )
        thread.start()
        time.sleep(0.1)
        second = post(served, body, key)
        thread.join()
    assert first[0].status_code == 200
    assert_error(second, 429, "budget_exceeded")
    assert second.headers["retry-after"] == "1"


def test_a_spent_lifetime_budget_gives_no_false_retry_time(served: ServedApp) -> None:
    key = new_key(served, max_budget=0.00001)
    response = post(served, {"model": "echo", "messages": HELLO, "max_tokens": 100}, key)
    assert_error(response, 429, "budget_exceeded")
    assert "retry-after" not in response.headers
    assert "max_budget" in response.json()["error"]["message"]


class _Defective:
    """A provider with a defect: every call raises an exception that is not an upstream
    failure, as a bug in a dialect's translation would."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        raise RuntimeError("defect in translation")

    async def stream(self, call: UpstreamCall) -> Any:
        raise RuntimeError("defect in translation")
        yield  # an async generator, as providers' streams are


def test_a_gateway_defect_is_a_500_envelope_that_releases_the_key_and_is_logged(
    fake_upstream: FakeOpenAI, tmp_path: Any
) -> None:
    config = gateway_config(fake_upstream, tmp_path / "defect.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(config) as served:
            state = served.app.state.crossroads
            state.providers["fake"] = _Defective(state.providers["fake"])
            key = new_key(served, max_parallel_requests=1, max_budget=1.0)
            ids = []
            for stream in (False, True, False, True):
                body = {"model": "echo", "messages": HELLO, "stream": stream}
                response = post(served, body, key)
                assert_error(response, 500, "internal_error")
                ids.append(response.headers["x-crossroads-log-id"])
                assert ids[-1] in response.json()["error"]["message"]
            state.providers["fake"] = state.providers["fake"]._wrapped
            # A leaked slot would refuse this with a 429.
            assert post(served, {"model": "echo", "messages": HELLO}, key).status_code == 200
            assert set(breaker_states(served).values()) == {"closed"}
            flush_log(served)
            for log_id in ids:
                record = httpx.get(
                    f"{served.url}/v1/logs/{log_id}",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ).json()
                assert record["status_code"] == 500
                assert record["error_code"] == "internal_error"


def test_a_client_gone_before_the_stream_starts_frees_its_slot(served: ServedApp) -> None:
    """The stream is opened (the upstream answered) but the caller hung up before the
    response began: the relay must still record the request and release its slot."""
    key = new_key(served, max_parallel_requests=1)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            body = b'{"model":"slow","messages":[{"role":"user","content":"hi"}],"stream":true}'
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            time.sleep(0.05)  # the gateway is waiting on the slow upstream
    time.sleep(0.6)
    assert post(served, {"model": "echo", "messages": HELLO}, key).status_code == 200


def test_a_client_gone_while_uploading_is_a_499_record(served: ServedApp) -> None:
    marker = f"upload-{time.time_ns()}"
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}"
            f"\r\nx-session-id: {marker}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"model": "echo", "messages": [')
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    records: list[Any] = []
    while time.monotonic() < deadline and not records:
        time.sleep(0.1)
        flush_log(served)
        records = httpx.get(
            f"{served.url}/v1/logs",
            params={"session_id": marker},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ).json()["data"]
    assert [r["status_code"] for r in records] == [499]
    assert records[0]["error_code"] == "client_closed_request"


def test_the_openai_sdk_sees_strict_types_as_bad_requests(served: ServedApp) -> None:
    client = OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="echo",
            messages=HELLO,  # type: ignore[arg-type]
            extra_body={"seed": "42"},
        )
    assert caught.value.param == "seed"  # type: ignore[attr-defined]


# --- the caller's own timeouts ---------------------------------------------------------------


@pytest.mark.parametrize("header", ["x-crossroads-timeout", "x-crossroads-attempt-timeout"])
@pytest.mark.parametrize("value", ["1e-9", "0", "-1", "nan", "inf", "3601", "soon"])
def test_a_timeout_header_no_upstream_could_meet_is_a_400(
    served: ServedApp, header: str, value: str
) -> None:
    response = httpx.post(
        f"{served.url}/v1/chat/completions",
        json={"model": "fixed", "messages": HELLO},
        headers={"Authorization": f"Bearer {API_KEY}", header: value},
    )
    assert_error(response, 400, "invalid_value", header)
    assert "0.01" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", ["x-crossroads-timeout", "x-crossroads-attempt-timeout"])
def test_timeouts_the_caller_chose_never_open_the_deployments_breaker(
    served: ServedApp, header: str
) -> None:
    """Six requests in a row time out by the caller's own header (the breaker opens after
    five real failures); the deployment stays closed and answers the next request."""
    for _ in range(6):
        response = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "slow", "messages": HELLO},
            headers={"Authorization": f"Bearer {API_KEY}", header: "0.05"},
            timeout=30,
        )
        assert response.status_code == 504, response.text
    assert all(state == "closed" for key, state in breaker_states(served).items() if "delay" in key)
    assert post(served, {"model": "slow", "messages": HELLO}).status_code == 200
