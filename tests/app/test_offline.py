"""The dashboard as `make app` starts it: nothing leaves the machine, and an idle server stays idle.

Real server and Debian's chromium, like tests/app/test_browser.py.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import psutil
import pytest

from tests.support.app_server import APP_IDLE_JS, GALLERY_LOADED_JS, dashboard_server

pytestmark = pytest.mark.browser
PAGES = ("", "compare", "map", "caches", "units")
IDLE_SECONDS = 10.0
SETTLE_SECONDS = 10.0
MAX_IDLE_CORE_SHARE = 0.05


def test_no_page_asks_another_host_for_anything(constructed_case, browser):
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    with dashboard_server(arguments) as server:
        own = urlsplit(server.url).netloc
        page = browser.new_page(viewport={"width": 1500, "height": 1700})
        elsewhere: list[str] = []
        page.on("request", lambda request: elsewhere.append(request.url)
                if urlsplit(request.url).scheme in ("http", "https", "ws", "wss")
                and urlsplit(request.url).netloc != own else None)
        x0, y0, x1, y1 = constructed_case.patch_box
        page.goto(f"{server.url}/?q={constructed_case.query}&box={x0},{y0},{x1},{y1}&x=1")
        page.wait_for_function(GALLERY_LOADED_JS, arg=[1, constructed_case.images - 1], timeout=120_000)
        for path in PAGES[1:]:
            page.goto(f"{server.url}/{path}")
            page.locator("[data-testid='stSidebar']").first.wait_for(timeout=60_000)
            page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        favicon = page.locator("link[rel='shortcut icon'], link[rel='icon']").first.get_attribute("href")
        assert urlsplit(favicon).netloc in ("", own), favicon
        assert elsewhere == []


def test_the_idle_server_leaves_the_cpu_alone(browser):
    # read-only: opening the demo must not start indexing its 400 photos, which is work, not idling
    with dashboard_server(env={**os.environ, "VFS_READ_ONLY": "1"}) as server:
        page = browser.new_page()
        page.goto(server.url)  # a session: Streamlit watches sources per session
        page.locator("[data-testid='stSidebar']").first.wait_for(timeout=60_000)
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        time.sleep(SETTLE_SECONDS)  # the session's start (threads, the model's card) takes a few seconds of CPU
        process = psutil.Process(server.pid)
        before, started = process.cpu_times(), time.monotonic()
        time.sleep(IDLE_SECONDS)
        after, seconds = process.cpu_times(), time.monotonic() - started
        share = (after.user + after.system - before.user - before.system) / seconds
        assert share < MAX_IDLE_CORE_SHARE, f"the idle server used {share:.1%} of a core"
