"""Running the dashboard as a real server, for browser tests and the latency benchmark."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

#: Debian's chromium; Playwright drives it instead of downloading its own browser.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")
APP = Path(__file__).resolve().parent.parent / "app.py"

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_dashboard(app_args: Sequence[str] = (), env: Mapping[str, str] | None = None, log: Path | None = None,
                      timeout: float = 90.0) -> Iterator[str]:
    """Start ``streamlit run app.py -- APP_ARGS`` on a free localhost port; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--", *app_args]
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
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log is not None:
            output.close()  # type: ignore[union-attr]
