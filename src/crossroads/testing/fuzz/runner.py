"""Send fuzz cases to a stage and count what came back, per endpoint and status.

A case is a failure when the gateway answered a 5xx (or, in an event stream that had
already started, an `internal_error` event), closed the connection without answering, or
answered an error that is not OpenAI's envelope. 4xx answers are the expected outcome of
almost every mutation and are only counted. One 5xx is the caller's own doing: a 504
`upstream_timeout` to a request that set a valid `x-crossroads-timeout` (say 0.05 s) that
the upstream did not meet — counted as "504 asked", not a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from crossroads.testing.fuzz.cases import Case
from crossroads.testing.fuzz.stage import Stage
from crossroads.testing.fuzz.wire import Reply, exchange

__all__ = ["Failure", "Tally", "send", "send_all"]

_PARSER_REFUSAL = b"Invalid HTTP request received."
_TIMEOUT_HEADERS = {b"x-crossroads-timeout", b"x-crossroads-attempt-timeout"}


@dataclass(frozen=True, slots=True)
class Failure:
    index: int
    family: str
    endpoint: str
    outcome: str  # status, "200 + stream error <code>", "no answer", "not an envelope"
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "family": self.family,
            "endpoint": self.endpoint,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Tally:
    """Counts per endpoint and outcome, per family and outcome, and every failure."""

    by_endpoint: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    by_family: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[Failure] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0
    last_log_id: str | None = None

    @property
    def server_errors(self) -> int:
        return sum(
            n
            for counts in self.by_endpoint.values()
            for outcome, n in counts.items()
            if (outcome.startswith("5") and outcome != "504 asked")
            or "stream error internal" in outcome
        )

    def add(self, case: Case, reply: Reply) -> None:
        self.sent += 1
        outcome = str(reply.status) if reply.status else "no answer"
        if reply.status == 400 and reply.body.startswith(_PARSER_REFUSAL):
            # uvicorn's HTTP parser refused bytes no HTTP message may hold (a NUL, a header
            # name that is not a token) before the app saw them: plain text, not an envelope.
            outcome = "400 http"
        if reply.status == 504 and _asked_for_a_timeout(case, reply):
            outcome = "504 asked"
        codes = [c for c in reply.stream_errors() if c != "None"]
        if codes:
            outcome += f" + stream error {codes[0]}"
        self.by_endpoint[case.endpoint][outcome] += 1
        for family in case.family.split("+"):
            self.by_family[family][outcome] += 1
        log_id = reply.headers.get("x-crossroads-log-id")
        if log_id and reply.status == 200:
            self.last_log_id = log_id
        detail = reply.transport_error or reply.body[:300].decode("utf-8", "replace")
        failed = (reply.status >= 500 and outcome != "504 asked") or not reply.status
        if failed or "internal_error" in codes:
            self.failures.append(Failure(case.index, case.family, case.endpoint, outcome, detail))
        elif outcome != "400 http" and (problem := reply.envelope_problem()):
            self.failures.append(
                Failure(case.index, case.family, case.endpoint, "not an envelope", problem)
            )
            self.by_endpoint[case.endpoint]["not an envelope"] += 1


def _asked_for_a_timeout(case: Case, reply: Reply) -> bool:
    """A 504 `upstream_timeout` to a case that set a timeout header: the gateway did what
    the caller asked (the code is checked, so a gateway-made 504 of another kind still
    fails)."""
    if not any(name.lower() in _TIMEOUT_HEADERS for name, _ in case.headers):
        return False
    try:
        return bool(orjson.loads(reply.body)["error"]["code"] == "upstream_timeout")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False


def _prepared(
    case: Case, stage: Stage, last_log: str | None
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    target = case.target.replace(b"{victim}", stage.victim_id.encode())
    headers = list(case.headers)
    names = {name.lower() for name, _ in headers}
    credential = stage.credential(case.auth)
    if credential is not None and b"authorization" not in names:
        headers.append((b"Authorization", credential))
    if case.body is not None and b"content-type" not in names:
        headers.append((b"Content-Type", b"application/json"))
    return target, headers


async def send(stage: Stage, case: Case, last_log: str | None = None) -> Reply:
    """Send one case (as `--replay` does)."""
    target, headers = _prepared(case, stage, last_log)
    body = case.body
    if body is not None and last_log is not None:
        body = body.replace(b"{last_log}", last_log.encode())
    return await exchange(stage.port, case.method, target, headers, body)


async def send_all(
    stage: Stage, cases: Iterable[Case], *, concurrency: int = 4, progress: bool = False
) -> Tally:
    """Send every case, `concurrency` at a time, and count the answers."""
    tally = Tally()
    queue = iter(cases)
    started = time.perf_counter()
    # Cases are made in a thread, one at a time: making one (an 18 MB body, say) takes
    # seconds of CPU, and done on this loop it would stop the clocks of the requests in
    # flight from being read — they would "time out" for want of the client, not the gateway.
    taking = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with taking:
                case = await asyncio.to_thread(next, queue, None)
            if case is None:
                return
            reply = await send(stage, case, tally.last_log_id)
            tally.add(case, reply)
            if progress and tally.sent % 1000 == 0:
                rate = tally.sent / (time.perf_counter() - started)
                print(f"  {tally.sent} sent, {rate:.0f}/s, {tally.server_errors} 5xx", flush=True)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    return tally
