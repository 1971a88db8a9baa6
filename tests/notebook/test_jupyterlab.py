"""vfs.widget in a real JupyterLab page: draw with the mouse, see results, read them from Python; find the
matches' modes and build a region set with the widget's buttons.

Starts JupyterLab on a free localhost port with a token, opens a notebook in headless Debian
chromium, runs its cells from the keyboard and draws on the widget's canvas with the mouse.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.data import package_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REPOSITORY = Path(__file__).resolve().parents[2]
ARTIFACTS = REPOSITORY / "test-artifacts"
START_TIMEOUT_S = 90
WAIT_MS = 120_000
CELL_START_MS = 20_000
TOP_K = 4

CELLS = [
    'import vfs\nw = vfs.widget("photos", query="animals/chelsea.png", cache_dir="cache", top_k=%d)\nw' % TOP_K,
    'import numpy as np\nrows, columns = np.nonzero(w.mask > 0.5)\n'
    'print("BRUSH", w.mask.shape, columns.min(), rows.min(), columns.max(), rows.max(), len(w.results))',
    'print("BOX", *(round(v) for v in w.box), len(w.results), w.results[0].path)',
    'w.box = (225, 150, 451, 300)',
    'w.query = "things/coffee.png"',
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_workspace(root: Path) -> None:
    """Photos in label folders, the notebook, and lab settings that keep news pop-ups away."""
    import nbformat  # the notebook tools are in the test extras, not in the small environments of other Pythons
    from nbformat.v4 import new_code_cell, new_notebook

    for folder, names in {"animals": ["chelsea.png", "astronaut.png"], "things": ["coffee.png", "rocket.jpg"],
                          "textures": ["brick.png", "grass.png"]}.items():
        (root / "work" / "photos" / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(package_photo(name), root / "work" / "photos" / folder / name)
    notebook = new_notebook(cells=[new_code_cell(source) for source in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "work" / "widget.ipynb")
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                          "checkForUpdates": False}))


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """The URL of the notebook in a running JupyterLab, token included."""
    prepare_workspace(tmp_path)
    port, token = free_port(), os.urandom(16).hex()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_PLATFORM_DIRS": "1",
           # the kernel imports this checkout's vfs, not whichever one the environment has installed
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path / 'work'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield f"{base}/lab/tree/widget.ipynb?token={token}"
    finally:
        try:  # shuts the kernels down too
            shutdown = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(shutdown, timeout=10)
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)  # the server's own session: it and its kernels
                server.wait(timeout=10)
        log.close()


def run_cell(page, index: int, attempts: int = 3) -> None:
    """Run a cell from the keyboard, pressing again if the key press was lost.

    On a loaded machine the editor may not have focus yet when the keys arrive; the cell's
    prompt turns from ``[ ]`` to ``[*]`` or ``[N]`` once the kernel has the cell.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for attempt in range(attempts):
        cell.locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function("(p) => /\\[(\\*|\\d+)\\]/.test(p.textContent)", arg=prompt.element_handle(),
                                   timeout=CELL_START_MS)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise


def drag(page, canvas, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
    """Press at ``start``, move to ``end``, release; points are fractions of the canvas."""
    bounds = canvas.bounding_box()
    point = lambda fx, fy: (bounds["x"] + fx * bounds["width"], bounds["y"] + fy * bounds["height"])  # noqa: E731
    page.mouse.move(*point(*start))
    page.mouse.down()
    page.mouse.move(*point(*end), steps=steps)
    page.mouse.up()


@pytest.mark.browser
@pytest.mark.torch  # the notebook's widget runs a model
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make browser-deps)")
def test_draw_in_jupyterlab_and_read_the_region_from_python(jupyterlab):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(WAIT_MS)
            page.goto(jupyterlab)
            expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(len(CELLS), timeout=WAIT_MS)
            kernel_idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
            expect(kernel_idle).to_have_count(1, timeout=WAIT_MS)

            run_cell(page, 0)  # starts the widget: loads the model, indexes 6 photos
            canvas = page.locator(".vfs-widget canvas.vfs-region")
            expect(canvas).to_be_visible(timeout=WAIT_MS)
            page.wait_for_function("document.querySelector('.vfs-query-image').naturalWidth > 0")
            canvas.scroll_into_view_if_needed()

            # the brush: a horizontal stroke across the cat's face
            drag(page, canvas, (0.3, 0.4), (0.6, 0.4))
            matches = page.locator(".vfs-widget .vfs-match")
            expect(matches).to_have_count(TOP_K, timeout=WAIT_MS)
            expect(page.locator(".vfs-widget .vfs-status")).to_contain_text("mask region", timeout=WAIT_MS)
            expect(matches.first.locator("figcaption")).to_contain_text("#1 1.000", timeout=WAIT_MS)

            run_cell(page, 1)
            brush_output = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
            expect(brush_output).to_contain_text("BRUSH", timeout=WAIT_MS)
            numbers = [int(v) for v in re.findall(r"-?\d+", brush_output.inner_text().split("BRUSH", 1)[1])]
            (height, width, x0, y0, x1, y1, found) = numbers
            radius = 28 / 2 * width / 448  # the default brush, 28 display pixels wide
            assert (height, width, found) == (300, 451, TOP_K)
            assert abs(x0 - (0.3 * width - radius)) <= 6 and abs(x1 - (0.6 * width + radius)) <= 6
            assert abs(y0 - (0.4 * height - radius)) <= 6 and abs(y1 - (0.4 * height + radius)) <= 6

            # the box tool replaces the strokes with an exact rectangle
            page.locator(".vfs-widget button[data-tool='box']").click()
            drag(page, canvas, (0.1, 0.1), (0.5, 0.6))
            expect(page.locator(".vfs-widget .vfs-status")).to_contain_text("box region", timeout=WAIT_MS)
            expect(matches).to_have_count(TOP_K, timeout=WAIT_MS)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-widget.png"))

            run_cell(page, 2)
            box_output = page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-OutputArea-output")
            expect(box_output).to_contain_text("animals/chelsea.png", timeout=WAIT_MS)
            x0, y0, x1, y1, found = (int(v) for v in re.findall(r"\d+", box_output.inner_text().split("BOX", 1)[1])[:5])
            assert abs(x0 - 45) <= 2 and abs(y0 - 30) <= 2 and abs(x1 - 226) <= 2 and abs(y1 - 180) <= 2
            assert found == TOP_K

            # a region set from code is drawn on the canvas: the bottom-right quarter, nothing else
            run_cell(page, 3)
            page.wait_for_function("""() => {
                const canvas = document.querySelector('.vfs-widget canvas.vfs-region');
                const alpha = (fx, fy) => canvas.getContext('2d').getImageData(
                    Math.floor(fx * canvas.width), Math.floor(fy * canvas.height), 1, 1).data[3];
                return alpha(0.75, 0.75) === 255 && alpha(0.3, 0.3) === 0;
            }""")

            # the modes of the box's matches, shown under the gallery; choosing one marks it
            page.locator(".vfs-widget button.vfs-find-modes").click()
            modes = page.locator(".vfs-widget .vfs-mode")
            expect(modes.first).to_be_visible(timeout=WAIT_MS)
            modes.first.click()
            expect(page.locator(".vfs-widget .vfs-mode.vfs-active")).to_have_count(1, timeout=WAIT_MS)

            # a query set from code replaces the picture and clears region and results
            run_cell(page, 4)
            expect(page.locator(".vfs-widget .vfs-query-name")).to_have_text("things/coffee.png", timeout=WAIT_MS)
            expect(matches).to_have_count(0, timeout=WAIT_MS)
            expect(modes).to_have_count(0, timeout=WAIT_MS)

            # a region set: one box to look for, one not to, then the negative removed again
            regions = page.locator(".vfs-widget .vfs-set-region")
            canvas.scroll_into_view_if_needed()  # running the cell scrolled the notebook down
            drag(page, canvas, (0.2, 0.2), (0.6, 0.7))
            expect(matches).to_have_count(TOP_K, timeout=WAIT_MS)
            page.locator(".vfs-widget button.vfs-add").click()
            expect(regions).to_have_count(1, timeout=WAIT_MS)
            drag(page, canvas, (0.7, 0.1), (0.95, 0.4))
            page.locator(".vfs-widget button.vfs-add-negative").click()
            expect(regions).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator(".vfs-widget .vfs-negative")).to_have_count(1, timeout=WAIT_MS)
            expect(page.locator(".vfs-widget .vfs-status")).to_contain_text("1 region to look for, 1 not to",
                                                                            timeout=WAIT_MS)
            expect(matches).to_have_count(TOP_K, timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-widget-region-set.png"))
            regions.nth(1).locator("button.vfs-remove").click()
            expect(regions).to_have_count(1, timeout=WAIT_MS)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-failure.png"))
            raise
        finally:
            browser.close()
