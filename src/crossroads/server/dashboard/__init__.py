"""The dashboard at `/ui`: server-rendered pages over the request log, for people.

Jinja2 templates, htmx for the log table's filters and paging, and Chart.js for the time
charts, both vendored as minified files under `static/` with their licences (no Node build).
Routes are listed here and mounted by `create_app` with one line.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from crossroads.server.dashboard.pages import Pages

__all__ = ["routes"]

_STATIC = Path(__file__).resolve().parent / "static"


def routes() -> list[BaseRoute]:
    """The dashboard's routes, with one `Pages` (and Jinja2 environment) per app."""
    pages = Pages()
    guarded = pages.guarded
    return [
        Route("/ui", guarded(pages.overview), methods=["GET"]),
        Route("/ui/login", pages.login_form, methods=["GET"]),
        Route("/ui/login", pages.login, methods=["POST"]),
        Route("/ui/logout", pages.logout, methods=["POST"]),
        Route("/ui/logs", guarded(pages.logs), methods=["GET"]),
        Route("/ui/logs/rows", guarded(pages.log_rows), methods=["GET"]),
        Route("/ui/logs/{log_id}", guarded(pages.log_detail), methods=["GET"]),
        Route("/ui/cost", guarded(pages.cost), methods=["GET"]),
        Route("/ui/latency", guarded(pages.latency), methods=["GET"]),
        Route("/ui/errors", guarded(pages.errors), methods=["GET"]),
        Route("/ui/keys", guarded(pages.keys, admin=True), methods=["GET"]),
        Route("/ui/router", guarded(pages.router), methods=["GET"]),
        Mount("/ui/static", app=StaticFiles(directory=_STATIC), name="ui-static"),
    ]
