"""How an upstream failure surfaces to the caller.

The caller did nothing wrong when an upstream times out or rejects the gateway's own
credentials, so those become 502/503/504 rather than being passed through as the
upstream's status (a relayed 401 would tell the caller *their* key is wrong). Statuses
that do describe the caller's request (400, 413, 422) and rate limits (429, with the
upstream's `Retry-After`) keep their status. The upstream's message is always kept.
An error event inside a stream carries the status the same error has without streaming,
so an overload is a 503 whether or not the caller streamed.
"""

from __future__ import annotations

import math

from crossroads.protocol.errors import GatewayError
from crossroads.providers.base import UpstreamError

__all__ = ["to_gateway_error"]

_CALLER_STATUSES = frozenset({400, 413, 422})
_STATUS_MAP = {408: 504, 500: 502, 502: 502, 503: 503, 504: 504, 529: 503}
_FAILURE_CODES = {
    "timeout": (504, "upstream_timeout"),
    "connection": (502, "upstream_unreachable"),
    "malformed": (502, "upstream_malformed_response"),
    "stream_interrupted": (502, "upstream_stream_interrupted"),
}


def to_gateway_error(
    exc: UpstreamError, provider: str, *, caller_key: bool = False
) -> GatewayError:
    """`caller_key`: the call used the caller's own upstream key (`openai_api_key`), so an
    upstream 401/403 is the caller's to fix and keeps its status."""
    if exc.failure != "http" or exc.status is None:
        status, code = _FAILURE_CODES.get(exc.failure, (502, "upstream_error"))
        if exc.failure == "connection" and exc.code:  # e.g. upstream_tls_error
            code = exc.code
        return GatewayError(status, exc.message, type="upstream_error", code=code)
    upstream = exc.status
    prefix = f"Upstream '{provider}' returned HTTP {upstream}: "
    if exc.in_stream:
        prefix = f"Upstream '{provider}' sent an error event in its stream (HTTP {upstream}): "
    if upstream in _CALLER_STATUSES:
        return GatewayError(upstream, prefix + exc.message, param=exc.param, code=exc.code)
    if upstream == 429:
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return GatewayError(
            429, prefix + exc.message, code=exc.code or "rate_limit_exceeded", headers=headers
        )
    if upstream in (401, 403) and caller_key:
        return GatewayError(
            upstream,
            prefix + exc.message + " (the key in `openai_api_key` was refused)",
            param="openai_api_key",
            code="invalid_api_key" if upstream == 401 else exc.code,
        )
    if upstream in (401, 403):
        return GatewayError(
            502,
            prefix + exc.message + " (the gateway's credentials for this upstream were refused)",
            type="upstream_error",
            code="upstream_auth_error",
        )
    status = _STATUS_MAP.get(upstream, 502)
    code = "upstream_model_not_found" if upstream == 404 else "upstream_error"
    headers = {}
    if status == 503 and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return GatewayError(
        status, prefix + exc.message, type="upstream_error", code=code, headers=headers
    )
