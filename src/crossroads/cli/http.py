"""The client commands' HTTP calls to a running gateway, with the standard library.

`chat` and `keys` make one request each, so a connection pool buys nothing and aiohttp's
import (about a seventh of a second) would be most of the command's start-up. Proxies from
the environment are not used: the gateway is usually on this machine, and a proxy set for
the wider internet must not see its keys.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

__all__ = ["GatewayUnreachable", "HTTPResponse", "error_message", "request"]

# Seconds a read may wait for the gateway: a long answer from a slow model streams for
# minutes, but each read is short.
_TIMEOUT = 600

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class GatewayUnreachable(Exception):
    """The gateway could not be reached; the message says why."""


class HTTPResponse:
    """A status and the body to read (all at once, or line by line for a stream)."""

    def __init__(self, status: int, body: IO[bytes]) -> None:
        self.status = status
        self.body = body

    def read(self) -> bytes:
        return self.body.read()

    def lines(self) -> Iterator[bytes]:
        yield from self.body


@contextmanager
def request(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[HTTPResponse]:
    """One call to the gateway; a 4xx or 5xx answer is a response too, not an exception."""
    call = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        response = _opener.open(call, timeout=_TIMEOUT)
    except urllib.error.HTTPError as exc:
        with exc:
            yield HTTPResponse(exc.code, exc)
        return
    except (urllib.error.URLError, OSError) as exc:
        raise GatewayUnreachable(str(getattr(exc, "reason", exc))) from None
    except ValueError as exc:  # not an http:// or https:// URL
        raise GatewayUnreachable(str(exc)) from None
    with response:
        yield HTTPResponse(response.status, response)


def error_message(payload: bytes) -> str:
    """The message of an error envelope, or the body as text when it is not one."""
    import orjson

    try:
        return str(orjson.loads(payload)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return payload.decode(errors="replace")
