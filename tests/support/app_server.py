"""Running the dashboard as a real server, for browser tests and benchmarks: start it, open sessions, read its memory."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

#: Debian's chromium; Playwright drives it instead of downloading its own browser.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")
APP = Path(__file__).resolve().parents[2] / "app.py"
#: Screenshots and server logs of the browser tests, for people to look at.
ARTIFACTS = APP.parent / "test-artifacts"

#: Browser-side test: is the app idle (no script run in progress, so no widget is about to be replaced)?
APP_IDLE_JS = """() => !document.querySelector("[data-testid='stStatusWidget']")"""

#: Browser-side test, given [search number, thumbnail count]: is that search's gallery shown with every
#: thumbnail loaded? The search page keys the gallery's container ``gallery`` and ends it with a caption
#: naming the search, "(search #N)", so the thumbnails above that caption belong to search N.
GALLERY_LOADED_JS = """([number, count]) => {
    const gallery = document.querySelector(".st-key-gallery");
    if (!gallery || !gallery.textContent.includes(`(search #${number})`)) return false;
    const images = Array.from(gallery.querySelectorAll("img"));
    return images.length >= count && images.every((image) => image.complete && image.naturalWidth > 0);
}"""


@dataclass(frozen=True)
class LinkedSearch:
    """One browser session's search, opened from a link."""

    captions: list[str]  # the gallery's captions, best match first
    seconds: float  # from opening the link to the gallery shown with every thumbnail loaded


@asynccontextmanager
async def linked_sessions(browser: Browser, url: str, links: Sequence[str], results: int,
                          timeout: float = 300.0) -> AsyncIterator[list[LinkedSearch]]:
    """Open every link (a search in URL parameters, e.g. ``/?q=...&box=...``) in a browser context of its own,
    all at once, and wait for each gallery of ``results`` thumbnails; the sessions stay open until the exit."""
    contexts = [await browser.new_context(viewport={"width": 1500, "height": 1700}) for _ in links]
    try:
        pages = [await context.new_page() for context in contexts]

        async def search(page: Page, link: str) -> LinkedSearch:
            started = time.perf_counter()
            await page.goto(f"{url}{link}", timeout=timeout * 1000)
            # polled every 100 ms rather than every frame: eight pages polling per frame would take CPU from the server
            await page.wait_for_function(GALLERY_LOADED_JS, arg=[1, results], polling=100, timeout=timeout * 1000)
            seconds = time.perf_counter() - started
            return LinkedSearch(await page.locator(".st-key-gallery [data-testid='stImageCaption']").all_inner_texts(),
                                seconds)

        yield list(await asyncio.gather(*(search(page, link) for page, link in zip(pages, links))))
    finally:
        for context in contexts:
            await context.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Dashboard:
    """A running dashboard server: its URL, and its process, whose memory /proc shows (Linux)."""

    url: str
    pid: int

    def resident_bytes(self) -> int:
        """The server's resident memory (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/{self.pid}/status has no VmRSS line")

    def mappings(self, files: Iterable[Path]) -> dict[Path, int]:
        """How many separate memory maps of each file the server holds (contiguous pieces count once)."""
        wanted = {str(Path(file).resolve()): Path(file) for file in files}
        counts: Counter[Path] = Counter({file: 0 for file in wanted.values()})
        previous: tuple[str, int, int] | None = None  # (file, end address, end offset) of the last piece
        for line in Path(f"/proc/{self.pid}/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
            name = fields[5].removesuffix(" (deleted)") if len(fields) == 6 else ""
            start, end = (int(value, 16) for value in fields[0].split("-"))
            offset = int(fields[2], 16)
            if name in wanted and previous != (name, start, offset):
                counts[wanted[name]] += 1
            previous = (name, end, offset + end - start)
        return dict(counts)


@contextmanager
def running_dashboard(app_args: Sequence[str] = (), env: Mapping[str, str] | None = None, log: Path | None = None,
                      timeout: float = 90.0, max_upload_mb: int | None = None) -> Iterator[str]:
    """Start ``streamlit run app.py -- APP_ARGS`` on a free localhost port; yields its URL.

    ``max_upload_mb`` overrides Streamlit's ``server.maxUploadSize`` (.streamlit/config.toml's otherwise): a
    deployment's dashboard starts only when it is at most the deployment's ``[uploads] max_mb``.
    """
    with dashboard_server(app_args, env, log, timeout, max_upload_mb) as server:
        yield server.url


@contextmanager
def dashboard_server(app_args: Sequence[str] = (), env: Mapping[str, str] | None = None, log: Path | None = None,
                     timeout: float = 90.0, max_upload_mb: int | None = None) -> Iterator[Dashboard]:
    """:func:`running_dashboard`, yielding the server's URL and process id. Started from the repository folder
    as ``make app`` does, so .streamlit/config.toml applies; only where it listens, not opening a browser and
    ``max_upload_mb`` (when given) differ."""
    port = free_port()
    upload = ["--server.maxUploadSize", str(max_upload_mb)] if max_upload_mb is not None else []
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), *upload, "--", *app_args]
    output = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, cwd=APP.parent, env=dict(env) if env is not None else None,
                              stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                where = f"; see {log}" if log else ""
                raise RuntimeError(f"streamlit exited with status {server.returncode}{where}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not answer on {url} within {timeout:.0f} s") from None
                time.sleep(0.2)
        yield Dashboard(url, server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log is not None:
            output.close()  # type: ignore[union-attr]
