"""Mutated requests to the gateway's other endpoints: the log, usage, feedback and admin APIs.

Each generator returns (family, method, target, body, auth) where `target` is the raw
request target (path and query, percent-encoded or not, as drawn) and `auth` names which
credential the runner sends. Query values come from the same hostile pools as chat bodies:
times of `inf`, `1e20` and year 9999 at -14:00, limits of 0 and 1e3, `metadata.*` filters
by the thousand, NUL bytes and non-latin-1 text; admin bodies get every field of the wrong
type, expiries far in the future or past, deep and huge metadata.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

from crossroads.testing.fuzz.values import (
    Raw,
    deep,
    encode,
    hostile_string,
    huge_string,
    odd_number,
    wrong_type,
)

__all__ = ["API_FAMILIES", "ApiRequest", "api_request"]

# (family, method, target, body, auth)
ApiRequest = tuple[str, str, bytes, Any, str]

_TIMES = (
    "inf",
    "-inf",
    "nan",
    "1e20",
    "-1e20",
    "1e308",
    "253402300800",
    "-62135596801",
    "0",
    "1700000000",
    "2026-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "2026-13-45",
    "yesterday",
    "",
    "2026-01-01T00:00:00\x00",
    "１７００００００００",
)
_LIMITS = ("0", "-1", "1", "50", "1000", "1001", "1e3", "٣", "99999999999999999999", "", "abc")
_STATUSES = ("ok", "error", "200", "429", "999", "0", "-1", "", "OK", "2e2")
_GROUPS = ("day", "model", "key", "provider", "week", "", "DAY", "key;drop")


def _text(rng: random.Random) -> str:
    return rng.choice(("", "x", "openai-echo", hostile_string(rng), "a" * 5000))


def _encoded(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"))


def _query(params: list[tuple[str, str]], rng: random.Random) -> bytes:
    """Percent-encoded (usually) or raw UTF-8 (sometimes) query text."""
    if rng.random() < 0.85:
        return "&".join(f"{_encoded(k)}={_encoded(v)}" for k, v in params).encode()
    raw = "&".join(f"{k}={v}" for k, v in params)
    return raw.replace(" ", "%20").replace("#", "%23").encode("utf-8", "surrogatepass")


def _logs(rng: random.Random) -> ApiRequest:
    params: list[tuple[str, str]] = []
    for name, pool in (
        ("start", _TIMES),
        ("end", _TIMES),
        ("limit", _LIMITS),
        ("status", _STATUSES),
    ):
        if rng.random() < 0.4:
            params.append((name, rng.choice(pool)))
    for name in ("model", "session_id", "before", "user", "tags", "extra.Country"):
        if rng.random() < 0.15:
            params.append((name, _text(rng)))
    if rng.random() < 0.3:
        count = rng.choice((1, 2, 16, 100, 2000))
        for i in range(count):
            key = rng.choice((f"k{i}", "%00", hostile_string(rng), "a'b", "team", ""))
            params.append((f"metadata.{key}", _text(rng)))
    return "logs_query", "GET", b"/v1/logs?" + _query(params, rng), None, "static"


def _log_by_id(rng: random.Random) -> ApiRequest:
    log_id = rng.choice(("x", "0" * 32, hostile_string(rng), "a" * 3000, "..%2F..%2Fetc", "%00"))
    target = "/v1/logs/" + quote(log_id.encode("utf-8", "surrogatepass"), safe="%")
    return "log_by_id", "GET", target.encode(), None, "static"


def _usage(rng: random.Random) -> ApiRequest:
    params = [
        (name, rng.choice(pool))
        for name, pool in (("start", _TIMES), ("end", _TIMES), ("group_by", _GROUPS))
        if rng.random() < 0.6
    ]
    auth = rng.choice(("static", "virtual"))
    return "usage_query", "GET", b"/v1/usage?" + _query(params, rng), None, auth


_KEY_FIELDS = (
    "name",
    "team",
    "models",
    "max_budget",
    "budget_period",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "expires_at",
    "metadata",
)
_EXPIRIES = (
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",
    "3000-01-01T00:00:00Z",
    "2000-01-01T00:00:00Z",
    "2099-01-01",
    "2099-01-01T00:00:00+14:00",
    "not a time",
    "",
    "2099-02-30T00:00:00Z",
)


def _key_body(rng: random.Random) -> Any:
    body: dict[str, Any] = {"name": "fuzz-" + str(rng.randrange(10**6))}
    for _ in range(rng.randint(1, 3)):
        field = rng.choice((*_KEY_FIELDS, "unknown", hostile_string(rng)))
        roll = rng.random()
        if field == "expires_at" and roll < 0.6:
            body[field] = rng.choice(_EXPIRIES)
        elif field == "metadata" and roll < 0.6:
            body[field] = rng.choice(
                (
                    {"a": deep(rng)},
                    {hostile_string(rng): hostile_string(rng)},
                    {"big": huge_string(rng)[:60_000]},
                    {str(i): i for i in range(2000)},
                )
            )
        elif (
            field in ("max_budget", "rpm_limit", "tpm_limit", "max_parallel_requests")
            and roll < 0.5
        ):
            body[field] = odd_number(rng)
        elif field in ("name", "team") and roll < 0.5:
            body[field] = hostile_string(rng)
        elif field == "models" and roll < 0.5:
            body[field] = rng.choice(([hostile_string(rng)], ["x"] * 1001, [], ["openai-echo"]))
        else:
            body[field] = wrong_type(rng)
    if rng.random() < 0.05:
        return rng.choice(([body], "key", 1, None, Raw("{"), Raw("")))
    return body


def _admin(rng: random.Random) -> ApiRequest:
    kind = rng.randrange(6)
    if kind <= 1:
        return "admin_create", "POST", b"/admin/keys", _key_body(rng), "master"
    if kind == 2:
        # `{victim}` is replaced by the runner with a key made for this purpose, never the
        # key the chat requests use.
        hostile = quote(hostile_string(rng).encode("utf-8", "surrogatepass"), safe="")
        path = rng.choice(("/admin/keys/{victim}", "/admin/keys/" + hostile))
        return "admin_update", "PATCH", path.encode(), _key_body(rng), "master"
    if kind == 3:
        params = []
        if rng.random() < 0.7:
            params.append(("team", _text(rng)))
        if rng.random() < 0.7:
            params.append(("include_revoked", rng.choice(("true", "1", "yes", "", "\x00"))))
        return "admin_list", "GET", b"/admin/keys?" + _query(params, rng), None, "master"
    if kind == 4:
        key_id = rng.choice(("{victim}", "nope", hostile_string(rng), "x" * 3000))
        target = (
            b"/admin/keys/" + quote(key_id.encode("utf-8", "surrogatepass"), safe="{}%").encode()
        )
        return "admin_get", "GET", target, None, rng.choice(("master", "static", "none"))
    key_id = rng.choice(("nope", hostile_string(rng), "{victim}"))
    target = b"/admin/keys/" + quote(key_id.encode("utf-8", "surrogatepass"), safe="{}%").encode()
    return "admin_revoke", "DELETE", target, None, "master"


def _feedback(rng: random.Random) -> ApiRequest:
    body: Any = {"log_id": rng.choice(("{last_log}", "nope", hostile_string(rng))), "score": 1}
    for _ in range(rng.randint(1, 2)):
        field = rng.choice(("log_id", "score", "comment", "unknown"))
        body[field] = rng.choice((wrong_type(rng), odd_number(rng), hostile_string(rng), deep(rng)))
    if rng.random() < 0.05:
        body = rng.choice(([body], Raw("{"), "x"))
    return "feedback", "POST", b"/v1/feedback", body, rng.choice(("static", "virtual"))


API_FAMILIES = {
    "logs_query": _logs,
    "log_by_id": _log_by_id,
    "usage_query": _usage,
    "admin": _admin,
    "feedback": _feedback,
}


def api_request(rng: random.Random, families: tuple[str, ...]) -> ApiRequest:
    return API_FAMILIES[rng.choice(families)](rng)


def encoded(body: Any, rng: random.Random) -> bytes | None:
    """A generated body as bytes (None: no body)."""
    if body is None:
        return None
    return body if isinstance(body, bytes) else encode(body, rng)
