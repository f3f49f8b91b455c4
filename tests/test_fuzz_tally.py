"""The fuzz harness itself: which answers count as the gateway's failures, and cases
that stay within what the fuzzer can build quickly."""

from __future__ import annotations

import orjson
import pytest

from crossroads.testing.fuzz.cases import Case, make_case
from crossroads.testing.fuzz.runner import Tally
from crossroads.testing.fuzz.values import HUGE_BODY_BYTES
from crossroads.testing.fuzz.wire import Reply


def _case(headers: tuple[tuple[bytes, bytes], ...]) -> Case:
    return Case(0, "timeout_header", "POST", b"/v1/chat/completions", headers, b"{}", "static")


def _reply(status: int, code: str) -> Reply:
    error = {"message": "m", "type": "upstream_error", "param": None, "code": code}
    return Reply(status, {"content-type": "application/json"}, orjson.dumps({"error": error}))


@pytest.mark.parametrize(
    ("headers", "code", "fails"),
    [
        (((b"x-crossroads-timeout", b"0.05"),), "upstream_timeout", False),
        (((b"X-Crossroads-Attempt-Timeout", b"0.001"),), "upstream_timeout", False),
        ((), "upstream_timeout", True),  # no timeout asked: the gateway's own 504
        (((b"x-crossroads-timeout", b"0.05"),), "internal_error", True),
    ],
)
def test_a_504_is_a_failure_unless_the_caller_asked_for_that_timeout(
    headers: tuple[tuple[bytes, bytes], ...], code: str, fails: bool
) -> None:
    tally = Tally()
    tally.add(_case(headers), _reply(504, code))
    assert bool(tally.failures) is fails
    assert tally.server_errors == (1 if fails else 0)


def test_no_answer_is_a_failure() -> None:
    tally = Tally()
    tally.add(_case(()), Reply(0, transport_error="TimeoutError: "))
    assert [f.outcome for f in tally.failures] == ["no answer"]


def test_a_huge_case_crosses_the_body_limit_without_filling_memory() -> None:
    # Case 12129 of seed 2 nests a message 5,000 levels deep and then repeats it: it was a
    # 3 GB body that took the fuzzer's loop a minute to build (its requests in flight then
    # "timed out").
    body = make_case(2, 12129).body or b""
    assert 10 * 1024 * 1024 < len(body) <= HUGE_BODY_BYTES + 1024 * 1024
