"""Whatever JSON reaches an inbound API, the answer is an error envelope or an answer,
never a 500: bodies built from each API's own field names with values of any shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY
from tests.inbound_gateway import inbound_gateway

__all__ = ["inbound_gateway"]

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "x", "user", "assistant", "text", "image", "tool_use", "tool_result",
                     "function_call", "function_call_output", "message", "input_text",
                     "thinking", "base64", "gpt-echo", "enabled", "auto", "tool"]),
)  # fmt: skip
_KEYS = st.sampled_from(
    ["type", "role", "content", "text", "source", "id", "name", "input", "tool_use_id",
     "call_id", "arguments", "output", "media_type", "data", "url", "image_url", "signature",
     "thinking", "is_error", "budget_tokens", "format", "schema", "parameters", "input_schema"]
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)
_FIELDS = {
    "/v1/messages": ["messages", "system", "tools", "tool_choice", "thinking", "max_tokens",
                     "stop_sequences", "metadata", "temperature", "top_k"],
    "/v1/responses": ["input", "instructions", "tools", "tool_choice", "text", "reasoning",
                      "max_output_tokens", "previous_response_id", "metadata", "store"],
    "/v1/completions": ["prompt", "max_tokens", "n", "stop", "echo", "suffix", "logprobs",
                        "best_of", "stream_options"],
}  # fmt: skip


@pytest.mark.parametrize("path", list(_FIELDS))
def test_no_body_is_a_server_error(inbound_gateway: ServedApp, path: str) -> None:
    client = httpx.Client(
        base_url=inbound_gateway.url, headers={"authorization": f"Bearer {API_KEY}"}
    )

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(_FIELDS[path]), _VALUES, max_size=5))
    def check(fields: dict[str, Any]) -> None:
        body = {"model": "gpt-echo", **fields}
        response = client.post(path, json=body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"]

    with client:
        check()
