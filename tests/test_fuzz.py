"""Property-based fuzzing: no request body, however mangled, makes the gateway answer 500.

Three generators: arbitrary JSON documents, valid requests with one field replaced by an
arbitrary JSON value, and raw bytes. Every answer must be a success or OpenAI's error
envelope with a 4xx (or an upstream-attributed 5xx) status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossroads.protocol.chat import ChatCompletionRequest
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [*sorted(ChatCompletionRequest.model_fields), "unknown_field"]
VALID: dict[str, Any] = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
UPSTREAM_STATUSES = {502, 503, 504}


@pytest.fixture(scope="module")
def http(gateway: ServedApp) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


def _check(response: httpx.Response) -> None:
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
        assert response.status_code < 500 or response.status_code in UPSTREAM_STATUSES


def _post(http: httpx.Client, content: bytes) -> httpx.Response:
    return http.post(
        "/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=json_values)
def test_arbitrary_json_never_500s(http: httpx.Client, body: Any) -> None:
    _check(_post(http, json.dumps(body).encode()))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), value=json_values, stream=st.booleans())
def test_valid_requests_with_one_field_mangled_never_500(
    http: httpx.Client, field: str, value: Any, stream: bool
) -> None:
    body = {**VALID, field: value}
    if stream and field != "stream":
        body["stream"] = True
    response = _post(http, json.dumps(body).encode())
    _check(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_500(http: httpx.Client, raw: bytes) -> None:
    _check(_post(http, raw))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    message=st.dictionaries(
        st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id"]), json_values
    )
)
def test_mangled_messages_never_500(http: httpx.Client, message: dict[str, Any]) -> None:
    _check(_post(http, json.dumps({**VALID, "messages": [message]}).encode()))
