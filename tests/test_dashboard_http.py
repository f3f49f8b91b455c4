"""The dashboard over HTTP: login and its cookie, who sees what, bad input, and that no
page ever shows a secret (keys, key hashes, a caller's own upstream key)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from crossroads.testing.fake_openai import FakeOpenAI
from tests.conftest import API_KEY, OTHER_KEY
from tests.dashboard_support import MASTER, Traffic, dashboard_gateway

PAGES = ("/ui", "/ui/logs", "/ui/cost", "/ui/latency", "/ui/errors", "/ui/router")


@pytest.fixture(scope="module")
def traffic(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traffic]:
    with dashboard_gateway(fake_upstream, tmp_path_factory.mktemp("ui") / "log.db") as made:
        yield made


def _get(traffic: Traffic, path: str, key: str | None = None, **params: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{traffic.served.url}{path}", headers=headers, params=params)


def test_pages_need_a_key(traffic: Traffic) -> None:
    response = _get(traffic, "/ui/logs")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    htmx = httpx.get(f"{traffic.served.url}/ui/logs/rows", headers={"hx-request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"] == "/ui/login"
    wrong = _get(traffic, "/ui", "sk-wrong-0123456789")
    assert wrong.status_code == 401
    assert "Incorrect API key" in wrong.text


def test_login_sets_a_strict_httponly_cookie(traffic: Traffic) -> None:
    url = traffic.served.url
    origin = {"origin": url}
    form = _get(traffic, "/ui/login")
    assert form.status_code == 200
    assert 'name="key"' in form.text
    bad = httpx.post(f"{url}/ui/login", data={"key": "sk-nope-0123456789"}, headers=origin)
    assert bad.status_code == 401
    assert "Incorrect API key" in bad.text
    foreign = httpx.post(
        f"{url}/ui/login", data={"key": API_KEY}, headers={"origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers
    assert httpx.post(f"{url}/ui/login", data={"key": API_KEY}).status_code == 403  # no Origin
    good = httpx.post(f"{url}/ui/login", data={"key": API_KEY}, headers=origin)
    assert good.status_code == 303
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    with httpx.Client(base_url=url, cookies=good.cookies) as browser:
        page = browser.get("/ui")
        assert page.status_code == 200
        assert 'id="viewer">main<' in page.text
        out = browser.post("/ui/logout", headers=origin)
        assert out.status_code == 303
        assert 'crossroads_ui=""' in out.headers["set-cookie"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_without_secrets(traffic: Traffic, path: str) -> None:
    for key in (MASTER, API_KEY, OTHER_KEY, traffic.virtual_secret):
        response = _get(traffic, path, key)
        assert response.status_code == 200, response.text
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        for secret in traffic.secrets:
            assert secret not in response.text, (path, secret)


def test_detail_pages_show_no_secrets(traffic: Traffic) -> None:
    for log_id in traffic.main_ids:
        page = _get(traffic, f"/ui/logs/{log_id}", MASTER)
        assert page.status_code == 200
        for secret in traffic.secrets:
            assert secret not in page.text
    byok = [i for i in traffic.main_ids if "byok" in _get(traffic, f"/ui/logs/{i}", API_KEY).text]
    assert byok, "the BYOK request was logged"


def test_keys_page_is_for_the_master_key_only(traffic: Traffic) -> None:
    page = _get(traffic, "/ui/keys", MASTER)
    assert page.status_code == 200
    assert "team-key" in page.text
    assert traffic.virtual_secret[:10] in page.text  # the prefix, never the rest
    assert traffic.virtual_secret not in page.text
    assert traffic.virtual_hash not in page.text
    assert 'href="/ui/keys"' in page.text
    for key in (API_KEY, OTHER_KEY, traffic.virtual_secret):
        refused = _get(traffic, "/ui/keys", key)
        assert refused.status_code == 403
        assert "master key" in refused.text
    assert 'href="/ui/keys"' not in _get(traffic, "/ui", API_KEY).text


def test_own_key_sees_only_its_records(traffic: Traffic) -> None:
    assert len(traffic.other_ids) == 2
    own = _get(traffic, "/ui/logs", OTHER_KEY)
    for log_id in traffic.other_ids:
        assert log_id in own.text
    for log_id in traffic.main_ids:
        assert log_id not in own.text
        assert _get(traffic, f"/ui/logs/{log_id}", OTHER_KEY).status_code == 404
    everyone = _get(traffic, "/ui/logs", API_KEY)
    for log_id in (*traffic.main_ids, *traffic.other_ids):
        assert log_id in everyone.text
    # The charts' totals are scoped too: `other` made 2 requests, 1 an error.
    overview = _get(traffic, "/ui", OTHER_KEY).text
    assert "requests<b>2</b>" in overview
    assert "requests<b>2</b>" not in _get(traffic, "/ui", MASTER).text


def test_totals_come_from_the_rollup_and_match_the_log(traffic: Traffic) -> None:
    total = len(traffic.main_ids) + len(traffic.other_ids) + 1  # and the virtual key's
    overview = _get(traffic, "/ui", MASTER).text
    assert f"requests<b>{total}</b>" in overview
    errors = _get(traffic, "/ui/errors", MASTER, by="model").text
    assert "error-500" in errors
    cost = _get(traffic, "/ui/cost", API_KEY, by="key").text
    for key in ("main", "other"):
        assert f"<td>{key}</td>" in cost


def test_filters_are_the_log_apis(traffic: Traffic) -> None:
    store = traffic.served.app.state.crossroads.log_store
    expected = [r.id for r in traffic.served.call(store.query(status="error"))]
    assert len(expected) >= 3  # 500, 429 and other's 400 at least
    errors = _get(traffic, "/ui/logs/rows", API_KEY, status="error").text
    assert errors.count('<tr class="error"') == errors.count("data-id=") == len(expected)
    assert all(log_id in errors for log_id in expected)
    fixed = _get(traffic, "/ui/logs/rows", API_KEY, model="fixed").text
    assert fixed.count("data-id=") == 3
    paged = _get(traffic, "/ui/logs/rows", API_KEY, limit="2").text
    assert paged.count("data-id=") == 2
    assert 'id="next-page"' in paged
    # The next page keeps every filter, metadata ones included.
    tagged = _get(traffic, "/ui/logs/rows", API_KEY, **{"metadata.team": "x"}).text
    assert tagged.count("data-id=") == 2
    first = _get(traffic, "/ui/logs/rows", API_KEY, limit="1", **{"metadata.team": "x"}).text
    (link,) = re.findall(r'hx-get="(/ui/logs/rows\?[^"]*)"', first)
    query = parse_qs(urlsplit(html.unescape(link)).query)
    assert query["metadata.team"] == ["x"]
    assert query["limit"] == ["1"]
    second = httpx.get(
        f"{traffic.served.url}{html.unescape(link)}", headers={"authorization": f"Bearer {API_KEY}"}
    ).text
    assert second.count("data-id=") == 1
    assert 'id="next-page"' not in second


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/ui/logs", {"status": "teapot"}, "'status' must be"),
        ("/ui/logs/rows", {"start": "yesterday"}, "'start' must be an ISO 8601"),
        ("/ui/logs", {"colour": "red"}, "Unknown query parameter"),
        ("/ui", {"range": "1y"}, "'range' must be one of"),
        ("/ui/cost", {"by": "team"}, "'by' must be one of"),
        ("/ui/latency", {"x": "1"}, "Unknown query parameter"),
    ],
)
def test_bad_input_is_a_400_page(
    traffic: Traffic, path: str, params: dict[str, str], message: str
) -> None:
    response = _get(traffic, path, API_KEY, **params)
    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert response.headers["content-type"].startswith("text/html")


def test_unknown_record_is_a_404_page(traffic: Traffic) -> None:
    response = _get(traffic, "/ui/logs/<script>nope", API_KEY)
    assert response.status_code == 404
    assert "<script>nope" not in response.text


def test_static_files_are_vendored_with_licences(traffic: Traffic) -> None:
    for name in ("htmx.min.js", "chart.min.js", "htmx.LICENSE.txt", "chart.LICENSE.txt"):
        response = _get(traffic, f"/ui/static/{name}")
        assert response.status_code == 200
    assert 'version:"2.0.3"' in _get(traffic, "/ui/static/htmx.min.js").text
    assert "Chart.js v2.9.3" in _get(traffic, "/ui/static/chart.min.js").text


def test_odd_stored_values_never_fail_a_page(traffic: Traffic) -> None:
    """Rows written by another tool, or before a field existed, render rather than 500."""
    from datetime import UTC, datetime

    from crossroads.storage.records import LogRecord, new_log_id

    record = LogRecord(
        id=new_log_id(),
        created_at=datetime.now(UTC),
        model_requested="router",
        status_code=200,
        key_id="odd-key",
        response={
            "routing": {"attempts": ["x", {"latency_ms": "slow", "api_key": "sk-leak-123"}]},
            "choices": "none",
            "quality": {"risk": 0.9, "flagged": True},
            "guardrails": {"blocked": False, "triggered": ["pii"]},
        },
        request={"messages": [], "openai_api_key": "sk-leak-456", "headers": {"Key": "k"}},
        latency_ms=None,
    )
    store = traffic.served.app.state.crossroads.log_store
    traffic.served.call(store.write([record]))
    detail = _get(traffic, f"/ui/logs/{record.id}", MASTER)
    assert detail.status_code == 200
    for shown in ('id="quality"', 'id="guardrails"', 'id="routing"', "[redacted]"):
        assert shown in detail.text
    for secret in ("sk-leak-123", "sk-leak-456"):
        assert secret not in detail.text
    assert _get(traffic, "/ui/router", MASTER).status_code == 200
