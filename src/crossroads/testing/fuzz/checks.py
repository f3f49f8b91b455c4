"""After the fuzz: is everything the requests shared still working?

Each check uses the gateway as a caller would, plus the two counters a caller cannot see:

- `log`: the writer has nothing stuck in its queue and rejected nothing; a fresh request's
  record can be read back through `GET /v1/logs`, and so can the run's last record;
- `limits`: the limited key's budget holds no reservation once every request has settled,
  and `max_parallel_requests` requests at once are all admitted (a leaked slot would make
  one a 429);
- `breakers`: every circuit is closed and counted no failure (the fakes never fail, so any
  failure counted was a caller's mistake charged to a deployment);
- `admin`: a key can still be created, listed, read, changed and revoked; `usage` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from crossroads.testing.fuzz.stage import MASTER_KEY, PARALLEL, STATIC_KEY, Stage
from crossroads.testing.fuzz.wire import Reply, exchange

__all__ = ["Check", "run_checks"]

FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


async def _call(
    stage: Stage, method: str, target: str, secret: str, body: Any = None, **headers: str
) -> Reply:
    sent = [(b"Authorization", f"Bearer {secret}".encode())]
    sent += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    raw = None
    if body is not None:
        raw = orjson.dumps(body)
        sent.append((b"Content-Type", b"application/json"))
    return await exchange(stage.port, method, target.encode(), sent, raw, limit_s=60)


def _json(reply: Reply) -> Any:
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None


def _on_gateway(stage: Stage, coroutine: Any) -> Any:
    """Await `coroutine` on the gateway's own event loop."""
    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, stage.served.loop))


async def _flush(stage: Stage) -> None:
    """Settle what is in flight and write the log queue; a writer that cannot finish within
    `FLUSH_TIMEOUT_S` raises `TimeoutError` (it has stalled)."""
    state = stage.served.app.state.crossroads
    async with asyncio.timeout(FLUSH_TIMEOUT_S):
        await _on_gateway(stage, state.gateway.drain())
        await _on_gateway(stage, state.log_writer.flush())


async def check_log(stage: Stage, last_log_id: str | None) -> Check:
    writer = stage.served.app.state.crossroads.log_writer
    problems = []
    try:
        await _flush(stage)
    except TimeoutError:
        problems.append(f"the log writer did not finish a flush in {FLUSH_TIMEOUT_S:.0f} s")
    if writer.pending:
        problems.append(f"{writer.pending} records still queued after a flush")
    for counter in ("dropped", "rejected"):
        if getattr(writer, counter, 0):
            problems.append(f"{getattr(writer, counter)} records {counter}")
    marker = f"fuzz-check-{uuid.uuid4().hex}"
    body = {"model": "openai-echo", "messages": [{"role": "user", "content": "after the fuzz"}]}
    fresh = await _call(
        stage, "POST", "/v1/chat/completions", stage.virtual_key, body, x_session_id=marker
    )
    if fresh.status != 200:
        problems.append(f"a fresh request got {fresh.status}: {fresh.body[:200]!r}")
    records: list[Any] = []
    for _ in range(50):  # a stalled writer never gets there
        with contextlib.suppress(TimeoutError):
            await _flush(stage)
        listed = await _call(stage, "GET", f"/v1/logs?session_id={marker}", STATIC_KEY)
        records = (_json(listed) or {}).get("data") or []
        if records or listed.status != 200:
            break
        await asyncio.sleep(0.1)
    if [r.get("status_code") for r in records] != [200]:
        problems.append(f"the fresh request's record was not found (got {records[:1]!r})")
    page = await _call(stage, "GET", "/v1/logs?limit=500", STATIC_KEY)
    if page.status != 200:
        problems.append(f"GET /v1/logs?limit=500 answered {page.status}: {page.body[:200]!r}")
    if last_log_id:
        last = await _call(stage, "GET", f"/v1/logs/{last_log_id}", STATIC_KEY)
        if last.status != 200:
            problems.append(f"the run's last record {last_log_id} answered {last.status}")
    return Check("log", not problems, "; ".join(problems) or "written and readable")


async def check_limits(stage: Stage) -> Check:
    with contextlib.suppress(TimeoutError):  # a stalled log writer is `check_log`'s finding
        await _flush(stage)
    state = stage.served.app.state.crossroads
    problems = []
    key = await _on_gateway(stage, state.key_store.get(stage.virtual_key_id))
    limits = state.gateway.accounts.limits
    held = await _on_gateway(stage, limits.budget_held(key))
    if held.reserved:
        problems.append(f"{held.reserved} nano-USD still reserved with nothing in flight")
    body = {"model": "openai-slow", "messages": [{"role": "user", "content": "together"}]}
    replies = await asyncio.gather(
        *(
            _call(stage, "POST", "/v1/chat/completions", stage.virtual_key, body)
            for _ in range(PARALLEL)
        )
    )
    refused = [r.status for r in replies if r.status != 200]
    if refused:
        problems.append(f"{len(refused)} of {PARALLEL} parallel requests refused: {refused}")
    detail = f"spent {held.spent / 1e9:.6f} USD, nothing reserved, {PARALLEL} slots free"
    return Check("limits", not problems, "; ".join(problems) or detail)


async def check_breakers(stage: Stage) -> Check:
    reply = await _call(stage, "GET", "/v1/providers/stats", STATIC_KEY)
    deployments = (_json(reply) or {}).get("deployments") or {}
    charged = {
        key: row["breaker"]
        for key, row in deployments.items()
        if row["breaker"]["state"] != "closed"
        or row["breaker"]["window_errors"]
        or row["breaker"]["consecutive_failures"]
    }
    ok = reply.status == 200 and bool(deployments) and not charged
    detail = f"{len(deployments)} deployments, all closed, no failure counted"
    return Check("breakers", ok, detail if ok else f"{reply.status}: charged {charged}")


async def check_admin(stage: Stage) -> Check:
    problems = []
    created = await _call(stage, "POST", "/admin/keys", MASTER_KEY, {"name": "after-fuzz"})
    key_id = (_json(created) or {}).get("id")
    steps = [("create", created)]
    if key_id:
        steps += [
            ("list", await _call(stage, "GET", "/admin/keys?include_revoked=true", MASTER_KEY)),
            ("get", await _call(stage, "GET", f"/admin/keys/{key_id}", MASTER_KEY)),
            (
                "update",
                await _call(stage, "PATCH", f"/admin/keys/{key_id}", MASTER_KEY, {"rpm_limit": 5}),
            ),
            ("revoke", await _call(stage, "DELETE", f"/admin/keys/{key_id}", MASTER_KEY)),
        ]
    steps.append(("usage", await _call(stage, "GET", "/v1/usage?group_by=key", STATIC_KEY)))
    for name, reply in steps:
        if reply.status != 200:
            problems.append(f"{name} answered {reply.status}: {reply.body[:200]!r}")
    return Check(
        "admin", not problems, "; ".join(problems) or "create/list/get/update/revoke/usage"
    )


async def run_checks(stage: Stage, last_log_id: str | None) -> list[Check]:
    """Every post-run check, in order (the log first: the others add records)."""
    return [
        await check_log(stage, last_log_id),
        await check_limits(stage),
        await check_breakers(stage),
        await check_admin(stage),
    ]
