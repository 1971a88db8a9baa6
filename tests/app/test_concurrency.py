"""Eight browser sessions searching one running dashboard at once.

Each session opens a link to the constructed case's search (the pasted patch in the query, the
query left out), so no drawing is involved and the right answer is known: the target first.
Server-side facts come from /proc: resident memory (VmRSS) and the memory maps of the cache's
shard files. Whether the model was loaded once is read from the bundled weights file being
opened once: an audit hook, installed in the server alone through a ``sitecustomize`` module on
its PYTHONPATH, logs each open of that file (``load_model`` reads it with ``torch.load``, which
does not keep it mapped). That watches the server without any hook in the code under test.
Needs Debian's chromium at /usr/bin/chromium and Linux's /proc.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.app_cases import ConstructedCase
from tests.support.app_server import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Dashboard,
    LinkedSearch,
    dashboard_server,
    linked_sessions,
)
from vfs.features.models import DEFAULT_MODEL, bundled_weights

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SESSIONS = 8
MAX_GROWTH = 1.2  # resident memory after eight more sessions, over that after one
PROBE_LINE = "vfs-probe: weights opened"
PROBE = """import sys

def _watch_weights(event, args):
    if event == "open" and str(args[0]) == {weights!r}:
        print({line!r}, file=sys.stderr, flush=True)

sys.addaudithook(_watch_weights)
"""


@pytest.fixture(scope="module", autouse=True)
def needs_chromium_and_proc():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium (`make browser-deps`) to run browser tests")
    if not Path("/proc/self/maps").exists():
        pytest.skip("reading the server's memory needs Linux's /proc")


def link(case: ConstructedCase) -> str:
    x0, y0, x1, y1 = case.patch_box
    return f"/?q={case.query}&box={x0},{y0},{x1},{y1}&x=1"


def probed_environment(folder: Path) -> dict[str, str]:
    """The server's environment, with the audit hook that logs each open of the bundled weights."""
    entry = bundled_weights(DEFAULT_MODEL)
    assert entry is not None and entry.installed
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(PROBE.format(weights=str(entry.path()), line=PROBE_LINE))
    paths = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def assert_right_results(case: ConstructedCase, searches: list[LinkedSearch]) -> None:
    for number, search in enumerate(searches, 1):
        assert len(search.captions) == case.images - 1, f"session {number}: {search.captions}"
        assert search.captions[0].startswith("1.") and search.captions[0].endswith(Path(case.target).name), \
            f"session {number} found {search.captions[0]!r} first"
        assert not any(Path(case.query).name in caption for caption in search.captions), f"session {number}"


def assert_loaded_once(case: ConstructedCase, server: Dashboard, log: Path) -> None:
    shards = sorted(case.cache_dir.rglob("*.arrow"))
    assert shards, f"no shard files under {case.cache_dir}"
    assert server.mappings(shards) == {shard: 1 for shard in shards}
    assert log.read_text().count(PROBE_LINE) == 1, "the model's weights were read more (or less) than once"


async def open_sessions(server: Dashboard, links: list[str], results: int) -> list[LinkedSearch]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        async with linked_sessions(browser, server.url, links, results) as searches:
            return searches


def test_eight_sessions_at_once_on_a_cold_server_share_one_model_and_one_map(constructed_case, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "concurrency-cold-streamlit.log"
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir), "--read-only"]
    with dashboard_server(arguments, env=probed_environment(tmp_path / "probe"), log=log) as server:
        searches = asyncio.run(open_sessions(server, [link(constructed_case)] * SESSIONS, constructed_case.images - 1))
        assert_right_results(constructed_case, searches)
        assert_loaded_once(constructed_case, server, log)


def test_eight_more_sessions_grow_resident_memory_by_under_a_fifth(constructed_case, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "concurrency-memory-streamlit.log"
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir), "--read-only"]
    results = constructed_case.images - 1

    async def one_then_eight(server: Dashboard) -> tuple[int, int]:
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
            async with linked_sessions(browser, server.url, [link(constructed_case)], results) as first:
                assert_right_results(constructed_case, first)
                after_one = server.resident_bytes()
                async with linked_sessions(browser, server.url, [link(constructed_case)] * SESSIONS, results) as more:
                    assert_right_results(constructed_case, more)
                    return after_one, server.resident_bytes()  # measured while all nine sessions are open

    with dashboard_server(arguments, env=probed_environment(tmp_path / "probe"), log=log) as server:
        after_one, after_nine = asyncio.run(one_then_eight(server))
        assert_loaded_once(constructed_case, server, log)
    growth = after_nine / after_one
    print(f"server resident memory: {after_one / 2**20:.0f} MiB after one session, {after_nine / 2**20:.0f} MiB "
          f"with eight more open ({growth:.2f}×)")
    assert growth < MAX_GROWTH
