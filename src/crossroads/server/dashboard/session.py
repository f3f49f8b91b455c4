"""Who is looking at the dashboard, and what they may see.

A viewer presents a key exactly as an API caller does, in `Authorization: Bearer …`, or in
the cookie the login form sets (HttpOnly, so no script can read it; SameSite=Strict, so no
other site's page can make the browser send it; scoped to `/ui`). The key is checked on
every request like any API key, so a revoked key loses the dashboard at once, on every
replica, with no session store. The master key sees everything and is the only one that
sees keys and budgets; a key with `logs = "all"` sees every record; any other key sees the
records it made. The only requests that change anything (log in, log out) must come from
the dashboard's own origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from crossroads.protocol.errors import GatewayError
from crossroads.server.state import AppState

__all__ = ["COOKIE", "Viewer", "clear_cookie", "same_origin", "set_cookie", "viewer"]

COOKIE = "crossroads_ui"
_MAX_AGE = 12 * 3600  # seconds a login lasts in the browser
MAX_KEY_CHARS = 512


@dataclass(frozen=True, slots=True)
class Viewer:
    """The dashboard's user: `key_id` is None when they may read every record."""

    label: str
    key_id: str | None
    admin: bool

    @property
    def read_all(self) -> bool:
        return self.key_id is None


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.crossroads
    return state


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        return header
    token = request.cookies.get(COOKIE)
    return f"Bearer {token}" if token else None


async def viewer(request: Request, authorization: str | None = None) -> Viewer:
    """The viewer behind `authorization` (else the request's header or cookie), or a
    `GatewayError` (401 for a missing or wrong key, 403 in loopback-only mode from afar)."""
    state = _state(request)
    authorization = authorization or _credential(request)
    if authorization is not None:
        try:
            state.keys.authenticate_admin(authorization)
        except GatewayError:
            pass
        else:
            return Viewer(label="master key", key_id=None, admin=True)
    client = request.client
    caller = await state.keys.authenticate(authorization, client.host if client else None)
    if state.may_read_all_logs(caller.key_id):
        return Viewer(label=caller.name or "this machine", key_id=None, admin=False)
    return Viewer(label=caller.name or caller.key_id or "?", key_id=caller.key_id, admin=False)


def same_origin(request: Request) -> bool:
    """True when a form post comes from a page of this host (CSRF: Origin, else Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc == host


def set_cookie(request: Request, response: Response, key: str) -> None:
    response.set_cookie(
        COOKIE,
        key,
        max_age=_MAX_AGE,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
