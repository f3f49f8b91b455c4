"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

Logs in through the form, checks that the charts are drawn, filters the log table with htmx
(the rows change without a page load), opens a record's detail view, and saves a screenshot
of each page under the test's temporary directory (the path is printed; `pytest -s` shows
it). Without Chromium the tests skip, or fail when CI is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossroads.testing.fake_openai import FakeOpenAI
from tests.conftest import API_KEY, OTHER_KEY
from tests.dashboard_support import Traffic, dashboard_gateway

CHROMIUM = os.environ.get("CROSSROADS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def traffic(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traffic]:
    with dashboard_gateway(fake_upstream, tmp_path_factory.mktemp("ui") / "log.db") as made:
        yield made


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is not installed at {CHROMIUM} and CI is set")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\ndashboard screenshots: {folder}")
    return folder


def _login(browser: Any, traffic: Traffic, key: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Script errors only: a 400 shown on purpose, or the browser's favicon request, also
    # log "Failed to load resource".
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.goto(f"{traffic.served.url}/ui")
    assert page.url.endswith("/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{traffic.served.url}/ui")
    page.errors = errors  # checked by each test at its end
    return page


def test_login_overview_and_charts(browser: Any, traffic: Traffic, shots: Path) -> None:
    page = _login(browser, traffic, API_KEY)
    assert page.inner_text("#viewer") == "main"
    page.wait_for_function(
        "() => [...document.querySelectorAll('canvas[data-chart]')].every(c => c.dataset.drawn)"
    )
    # Chart.js drew on the canvas: some pixel is not transparent.
    drawn = page.evaluate(
        """() => { const c = document.querySelector('canvas[data-chart]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return d.some(v => v !== 0); }"""
    )
    assert drawn
    # The cookie holds the key but no script can read it.
    assert page.evaluate("() => document.cookie") == ""
    page.screenshot(path=shots / "overview.png", full_page=True)
    for name in ("cost", "latency", "errors", "router"):
        page.goto(f"{traffic.served.url}/ui/{name}")
        page.screenshot(path=shots / f"{name}.png", full_page=True)
    assert page.errors == []


def test_htmx_filters_and_detail_view(browser: Any, traffic: Traffic, shots: Path) -> None:
    page = _login(browser, traffic, API_KEY)
    page.goto(f"{traffic.served.url}/ui/logs")
    rows = page.locator("#log-table tr[data-id]")
    everything = rows.count()
    assert everything == len(traffic.main_ids) + len(traffic.other_ids) + 1
    page.evaluate("() => { window.notReloaded = true; }")
    page.select_option("select[name=status]", "error")
    page.wait_for_function(
        f"() => document.querySelectorAll('#log-table tr[data-id]').length < {everything}"
    )
    assert page.evaluate("() => window.notReloaded") is True
    assert rows.count() == page.locator("#log-table tr.error").count() >= 3
    page.screenshot(path=shots / "logs-errors.png", full_page=True)
    # A bad filter shows the 400 message in place of the rows.
    page.fill("input[name=start]", "yesterday")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#rows #message")
    assert "'start' must be" in page.inner_text("#rows #message")
    page.fill("input[name=start]", "")
    page.fill("input[name=model]", "error-500")
    page.click("#filters button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#log-table tr[data-id]').length === 1")
    page.click("#log-table tr[data-id] a")
    page.wait_for_selector("#routing")
    assert "error-500" in page.inner_text("#summary")
    assert page.locator("#attempts tr").count() >= 2
    assert "strategy" in page.inner_text("#routing")
    page.screenshot(path=shots / "detail.png", full_page=True)
    assert page.errors == []


def test_own_key_in_the_browser(browser: Any, traffic: Traffic, shots: Path) -> None:
    page = _login(browser, traffic, OTHER_KEY)
    assert "own records" in page.inner_text("#viewer")
    page.goto(f"{traffic.served.url}/ui/logs")
    ids = page.eval_on_selector_all("#log-table tr[data-id]", "rows => rows.map(r => r.dataset.id)")
    assert sorted(ids) == sorted(traffic.other_ids)
    page.screenshot(path=shots / "logs-own.png", full_page=True)
    page.click("header button")
    page.wait_for_url(f"{traffic.served.url}/ui/login")
    page.goto(f"{traffic.served.url}/ui")
    assert page.url.endswith("/ui/login")
