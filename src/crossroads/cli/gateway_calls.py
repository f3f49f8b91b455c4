"""The data-loop commands' calls to a running gateway's API, with the caller's own key.

`datasets`, `eval` and `finetune` act as an application would (a dataset belongs to the key
that made it), so they send `$CROSSROADS_API_KEY`, not the master key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from crossroads.cli.common import fail
from crossroads.environ import API_KEY_ENV

__all__ = ["ApiKeyOption", "UrlOption", "api", "api_lines"]

UrlOption = Annotated[str, typer.Option(help="Gateway base URL.")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(envvar=API_KEY_ENV, help="Bearer key for the gateway.", show_default=False),
]


def _headers(api_key: str | None, content_type: str) -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def api(
    url: str,
    api_key: str | None,
    method: str,
    path: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    content_type: str = "application/json",
    params: dict[str, str] | None = None,
) -> Any:
    """One API call; print its error and exit 1 when it is refused."""
    import urllib.parse

    import orjson

    from crossroads.cli.http import GatewayUnreachable, error_message, request

    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    payload = data if body is None else orjson.dumps(body)
    try:
        with request(
            method,
            f"{url.rstrip('/')}{path}{query}",
            data=payload,
            headers=_headers(api_key, content_type),
        ) as resp:
            status, answer = resp.status, resp.read()
    except (GatewayUnreachable, OSError) as exc:
        raise fail(f"Cannot reach the gateway at {url}: {exc}", 1) from None
    if status >= 400:
        raise fail(f"HTTP {status}: {error_message(answer)}", 1)
    return orjson.loads(answer)


def api_lines(
    url: str, api_key: str | None, path: str, params: dict[str, str] | None = None
) -> Iterator[bytes]:
    """A streamed GET, line by line (an export), never held whole."""
    import urllib.parse

    from crossroads.cli.http import GatewayUnreachable, error_message, request

    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    try:
        with request(
            "GET", f"{url.rstrip('/')}{path}{query}", headers=_headers(api_key, "application/json")
        ) as resp:
            if resp.status >= 400:
                raise fail(f"HTTP {resp.status}: {error_message(resp.read())}", 1)
            yield from resp.lines()
    except (GatewayUnreachable, OSError) as exc:
        raise fail(f"Cannot reach the gateway at {url}: {exc}", 1) from None
