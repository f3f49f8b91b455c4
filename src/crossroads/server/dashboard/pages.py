"""The dashboard's pages: each one authenticates, runs a few indexed queries, renders.

Charts and totals come from the hourly rollup (`DashboardStore`), the log table and detail
view from `LogStore` with the filters `/v1/logs` takes (parsed by the same `log_query`), so
the table and the API always agree on what a filter means. A viewer who may read only their
own records gets every query scoped to their key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from crossroads.limits import budget_period_start
from crossroads.protocol.errors import GatewayError
from crossroads.server.dashboard import session
from crossroads.server.dashboard.views import (
    RANGES,
    TimeRange,
    breaker_rows,
    chart,
    check_names,
    record_sections,
    time_range,
)
from crossroads.server.log_query import LOG_PARAMETERS, log_query
from crossroads.server.state import AppState
from crossroads.storage.dashboard_store import Breakdown, DashboardStore, GroupTotals

__all__ = ["Pages"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_BREAKDOWNS = ("model", "key", "provider")
# Content-Security-Policy: scripts only from /ui/static (no inline script at all), and the
# pages may not be framed (clickjacking). htmx sets inline styles for its indicators.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Page = Callable[[Request, session.Viewer], Awaitable[Response]]


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.crossroads
    return state


def _ms(value: Any) -> str:
    """Milliseconds as shown; "–" for anything that is not a number (stored data may be odd)."""
    if type(value) not in (int, float):
        return "–"
    return f"{value:,.0f} ms"


class Pages:
    """The handlers, sharing one Jinja2 environment (built per app, never at import)."""

    def __init__(self) -> None:
        self._jinja = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._jinja.filters["ms"] = _ms

    def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        body = self._jinja.get_template(name).render(
            request=request, ranges=list(RANGES), **context
        )
        return HTMLResponse(body, status_code=status, headers=_HEADERS)

    def error(self, request: Request, error: GatewayError, viewer: Any = None) -> HTMLResponse:
        return self.render(request, "error.html", status=error.status, error=error, viewer=viewer)

    # --- sessions ------------------------------------------------------------------------

    def guarded(
        self, page: Page, *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """`page` behind the dashboard's login; errors as HTML pages with their status."""

        async def endpoint(request: Request) -> Response:
            try:
                viewer = await session.viewer(request)
            except GatewayError as exc:
                if exc.status != 401 or "authorization" in request.headers:
                    return self.error(request, exc)
                # No key, or a cookie whose key no longer works: to the login form.
                if request.headers.get("hx-request"):
                    response: Response = Response(
                        status_code=401, headers={"HX-Redirect": "/ui/login"}
                    )
                else:
                    response = RedirectResponse("/ui/login", status_code=303)
                if session.COOKIE in request.cookies:
                    session.clear_cookie(response)
                return response
            if admin and not viewer.admin:
                return self.error(
                    request,
                    GatewayError(
                        403,
                        "Keys and budgets are shown to the master key only.",
                        code="permission_denied",
                    ),
                    viewer,
                )
            try:
                return await page(request, viewer)
            except GatewayError as exc:
                return self.error(request, exc, viewer)

        return endpoint

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", message=None, viewer=None)

    async def login(self, request: Request) -> Response:
        if not session.same_origin(request):
            return self.error(
                request,
                GatewayError(
                    403, "Log in from the dashboard's own page.", code="cross_origin_request"
                ),
            )
        key = _form_value(await request.body(), "key")
        if not key or len(key) > session.MAX_KEY_CHARS:
            return self.render(
                request, "login.html", status=400, message="Enter an API key.", viewer=None
            )
        try:
            await session.viewer(request, f"Bearer {key}")
        except GatewayError as exc:
            return self.render(
                request, "login.html", status=exc.status, message=exc.message, viewer=None
            )
        response = RedirectResponse("/ui", status_code=303)
        session.set_cookie(request, response, key)
        return response

    async def logout(self, request: Request) -> Response:
        if not session.same_origin(request):
            return self.error(
                request,
                GatewayError(
                    403, "Log out from the dashboard's own page.", code="cross_origin_request"
                ),
            )
        response = RedirectResponse("/ui/login", status_code=303)
        session.clear_cookie(response)
        return response

    # --- pages ---------------------------------------------------------------------------

    async def overview(self, request: Request, viewer: session.Viewer) -> Response:
        check_names(request.query_params, ("range",))
        span = time_range(request.query_params.get("range"))
        store = DashboardStore(_state(request).log_store.engine)
        total = (await store.totals(span.start, span.end, by=None, key_id=viewer.key_id))[0]
        hourly = await store.hourly(
            span.start, span.end, by=None, key_id=viewer.key_id, histograms=False, daily=span.daily
        )
        traffic = chart(span, hourly, "requests", names=["all"])
        traffic["datasets"][0]["label"] = "requests"
        errors = chart(span, hourly, "errors", names=["all"])
        errors["datasets"][0].update(label="errors", color="#dc2626")
        traffic["datasets"].append(errors["datasets"][0])
        return self.render(
            request,
            "overview.html",
            viewer=viewer,
            span=span,
            total=total,
            traffic=traffic,
            cost=chart(span, hourly, "cost", names=["all"]),
            breakers=breaker_rows(_state(request)),
        )

    async def logs(self, request: Request, viewer: session.Viewer) -> Response:
        page = await self._log_page(request, viewer)
        template = "_log_rows.html" if request.headers.get("hx-request") else "logs.html"
        return self.render(request, template, viewer=viewer, **page)

    async def log_rows(self, request: Request, viewer: session.Viewer) -> Response:
        return self.render(
            request, "_log_rows.html", viewer=viewer, **await self._log_page(request, viewer)
        )

    async def _log_page(self, request: Request, viewer: session.Viewer) -> dict[str, Any]:
        query = log_query(request.query_params)
        records, has_more = await _state(request).log_store.page(
            limit=query.limit, key_id=viewer.key_id, **query.filters
        )
        shown = {
            k: v
            for k, v in request.query_params.items()
            if k in LOG_PARAMETERS or k.startswith(("metadata.", "extra."))
        }
        return {
            "records": records,
            "has_more": has_more,
            "filters": shown,
            "next_query": {**shown, "before": records[-1].id} if has_more else None,
        }

    async def log_detail(self, request: Request, viewer: session.Viewer) -> Response:
        log_id = request.path_params["log_id"]
        record = await _state(request).log_store.get(log_id)
        if record is None or (viewer.key_id is not None and record.key_id != viewer.key_id):
            shown = log_id[:64].encode("unicode_escape").decode()
            raise GatewayError(
                404, f"No request log record with id '{shown}'.", code="log_not_found"
            )
        return self.render(
            request,
            "log_detail.html",
            viewer=viewer,
            record=record,
            sections=record_sections(record),
        )

    async def _breakdown(
        self, request: Request, viewer: session.Viewer
    ) -> tuple[TimeRange, Breakdown, DashboardStore, list[GroupTotals]]:
        check_names(request.query_params, ("range", "by"))
        span = time_range(request.query_params.get("range"))
        by = request.query_params.get("by") or "model"
        if by not in _BREAKDOWNS:
            raise GatewayError(
                400,
                f"'by' must be one of {', '.join(_BREAKDOWNS)}; got {by[:32]!r}.",
                param="by",
                code="invalid_value",
            )
        store = DashboardStore(_state(request).log_store.engine)
        breakdown = cast(Breakdown, by)
        totals = await store.totals(span.start, span.end, by=breakdown, key_id=viewer.key_id)
        return span, breakdown, store, totals

    async def cost(self, request: Request, viewer: session.Viewer) -> Response:
        span, by, store, totals = await self._breakdown(request, viewer)
        hourly = await store.hourly(
            span.start, span.end, by=by, key_id=viewer.key_id, histograms=False, daily=span.daily
        )
        return self.render(
            request,
            "cost.html",
            viewer=viewer,
            span=span,
            by=by,
            totals=totals,
            chart=chart(span, hourly, "cost", kind="bar", stacked=True),
        )

    async def latency(self, request: Request, viewer: session.Viewer) -> Response:
        span, by, store, totals = await self._breakdown(request, viewer)
        hourly = await store.hourly(
            span.start, span.end, by=None, key_id=viewer.key_id, daily=span.daily
        )
        lines = chart(span, hourly, "p50", names=["all"])
        lines["datasets"][0]["label"] = "latency p50"
        for value, label, color in (
            ("p95", "latency p95", "#dc2626"),
            ("ttft50", "TTFT p50", "#16a34a"),
            ("ttft95", "TTFT p95", "#d97706"),
        ):
            series = chart(span, hourly, value, names=["all"])["datasets"][0]
            series.update(label=label, color=color)
            lines["datasets"].append(series)
        return self.render(
            request, "latency.html", viewer=viewer, span=span, by=by, totals=totals, chart=lines
        )

    async def errors(self, request: Request, viewer: session.Viewer) -> Response:
        span, by, store, totals = await self._breakdown(request, viewer)
        hourly = await store.hourly(
            span.start, span.end, by=by, key_id=viewer.key_id, histograms=False, daily=span.daily
        )
        return self.render(
            request,
            "errors.html",
            viewer=viewer,
            span=span,
            by=by,
            totals=sorted(totals, key=lambda t: (-t.errors, t.name)),
            chart=chart(span, hourly, "errors", kind="bar", stacked=True),
            breakers=breaker_rows(_state(request)),
        )

    async def keys(self, request: Request, viewer: session.Viewer) -> Response:
        check_names(request.query_params, ())
        state = _state(request)
        virtual = await state.key_store.list()
        store = DashboardStore(state.log_store.engine)
        periods: dict[datetime | None, list[str]] = {}
        for key in virtual:
            periods.setdefault(budget_period_start(key.budget_period), []).append(key.id)
        spent: dict[str, float] = {}
        for since, ids in periods.items():  # one query per kind of budget period
            spent.update(await store.spend_since(ids, since))
        rows = [
            {"key": key, "status": key.status(), "spent": spent.get(key.id, 0.0)} for key in virtual
        ]
        return self.render(
            request,
            "keys.html",
            viewer=viewer,
            virtual=rows,
            configured=[(k.name, k.logs) for k in state.config.keys],
        )

    async def router(self, request: Request, viewer: session.Viewer) -> Response:
        check_names(request.query_params, ("range",))
        span = time_range(request.query_params.get("range"))
        state = _state(request)
        records, _ = await state.log_store.page(
            limit=50, model="router", key_id=viewer.key_id, start=span.start
        )
        decisions = []
        for record in records:
            response = record.response if isinstance(record.response, dict) else {}
            routing = response.get("routing")
            routing = routing if isinstance(routing, dict) else {}
            router = routing.get("router")
            decisions.append(
                {"record": record, "chosen": routing.get("chosen"), "predicted": _predicted(router)}
            )
        store = DashboardStore(state.log_store.engine)
        served = [
            t
            for t in await store.totals(span.start, span.end, by="model", key_id=viewer.key_id)
            if t.routed
        ]
        return self.render(
            request,
            "router.html",
            viewer=viewer,
            span=span,
            decisions=decisions,
            served=sorted(served, key=lambda t: -t.routed),
            feedback=await store.recent_feedback(limit=50, key_id=viewer.key_id),
        )


def _predicted(router: Any) -> str:
    """The router's predicted quality and cost for the model it chose, as shown."""
    if not isinstance(router, dict) or not isinstance(router.get("candidates"), list):
        return ""
    for candidate in router["candidates"]:
        if isinstance(candidate, dict) and candidate.get("model") == router.get("chosen"):
            quality, cost = candidate.get("predicted_quality"), candidate.get("predicted_cost")
            if type(quality) in (int, float) and type(cost) in (int, float):
                return f"{router['chosen']}: quality {quality:.3f}, ${cost:.6f}"
    return ""


def _form_value(body: bytes, name: str) -> str | None:
    """One field of an `application/x-www-form-urlencoded` body."""
    from urllib.parse import parse_qs

    try:
        values = parse_qs(body.decode("utf-8"), max_num_fields=10).get(name)
    except (UnicodeDecodeError, ValueError):
        return None
    return values[0].strip() if values else None
