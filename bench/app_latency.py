"""Dashboard latency in a real browser: from releasing the mouse on the canvas to the gallery shown,
and every other interaction of the Search page against a target.

Starts ``streamlit run app.py -- --data DATA --cache-dir DIR`` from the repository folder as ``make app``
does (.streamlit/config.toml applies; only the port, headless mode and those two arguments are given),
opens it in headless Debian chromium through Playwright, and per trial: clears the canvas, draws a brush
stroke, releases the mouse and waits until the new gallery's k thumbnails have all loaded. It also notes when
the page sent the stroke to the server (its first websocket message after mouse-up, in the page's own
``performance.now()`` time): the canvas component alone would wait 200 ms; the Search page's canvas companion
sends at once. Then, each
``--repeats`` times: k up and down by one, the exclude toggle, a match's Details dialog, its "Why this
match" attribution, a switch to another page and back, and opening the page's link in a new session.
The cache must exist (build it once with ``.venv/bin/vfs index DATA``); the benchmark refuses to wait for
an index build.

    .venv/bin/python bench/app_latency.py                      # ../shared/datasets/imagenette-val
    .venv/bin/python bench/app_latency.py --data DIR --trials 20 --json
    .venv/bin/python bench/app_latency.py --compare runner.postScriptGC=true   # strokes, side by side

``--compare OPTION=VALUE`` starts two servers, one as ``make app`` does and one with that Streamlit option
changed, and alternates strokes between them: the option's cost measured side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.app_server import APP_IDLE_JS, CHROMIUM, CHROMIUM_ARGS, GALLERY_LOADED_JS, running_dashboard

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "imagenette-val"


MAX_ATTEMPTS = 3
#: Seconds each interaction should take at p90 on a quiet machine (``stroke``: mouse-up to gallery). A new
#: search (stroke, k, exclude) includes scoring every image; Details scores every window of one image;
#: Why runs the model backward once; a link opens a new session, whose first run loads the model.
TARGETS_S = {"stroke": 0.5, "k": 0.5, "exclude": 0.5, "details": 1.0, "why": 3.0, "to_other_page": 1.0,
             "back_to_search": 1.0, "open_link": 3.0}


#: Browser-side: from now on, record when the page sends on its websocket (performance.now() times).
RECORD_SENDS_JS = """() => {
    if (window.vfsSends) return;
    window.vfsSends = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) { window.vfsSends.push(performance.now()); return send.call(this, data); };
}"""


PAINTED_PIXELS_JS = """(canvas) => {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 64) if (data[i] > 0) painted++;
    return painted;
}"""


def drawn_pixels(page: Page) -> int:
    """How many sampled pixels of the drawing layer (not the background) are painted."""
    return page.locator("canvas.dc-canvas.lower-canvas").evaluate(PAINTED_PIXELS_JS)


def clear_canvas(page: Page) -> None:
    """Press Clear and wait until the drawing is gone, the results with it, and the app is idle."""
    page.locator(".st-key-clear button").click()
    page.get_by_text("Draw on the query image").first.wait_for(timeout=30_000)
    drawing_layer = page.locator("canvas.dc-canvas.lower-canvas").element_handle()
    page.wait_for_function(f"(canvas) => ({PAINTED_PIXELS_JS})(canvas) === 0", arg=drawing_layer, timeout=30_000)
    page.wait_for_function(APP_IDLE_JS, timeout=30_000)


def stroke(page: Page, canvas_box: dict, trial: int) -> None:
    """A diagonal brush stroke whose place changes with the trial, so every search differs."""
    x0 = canvas_box["x"] + canvas_box["width"] * (0.15 + 0.07 * (trial % 8))
    y0 = canvas_box["y"] + canvas_box["height"] * (0.2 + 0.05 * (trial % 7))
    length = min(canvas_box["width"], canvas_box["height"]) * 0.25
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 9):
        page.mouse.move(x0 + length * step / 8, y0 + length * 0.6 * step / 8)


def p90(values: list[float]) -> float:
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def timed(action, ready) -> float:
    """Seconds from ``action()`` until ``ready()`` returns (each waits in the browser)."""
    started = time.perf_counter()
    action()
    ready()
    return time.perf_counter() - started


def search_number(page: Page) -> int:
    caption = page.locator(".st-key-gallery").inner_text()
    return int(re.search(r"\(search #(\d+)\)", caption).group(1))


def gallery_ready(page: Page, number: int, count: int) -> None:
    page.wait_for_function(GALLERY_LOADED_JS, arg=[number, count], polling="raf", timeout=30_000)


DIALOG_IMAGES_JS = """(count) => {
    const images = Array.from(document.querySelectorAll("[role='dialog'] img"));
    return images.length >= count && images.every((image) => image.complete && image.naturalWidth > 0);
}"""


def close_dialog(page: Page) -> None:
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached", timeout=30_000)
    page.wait_for_function(APP_IDLE_JS, timeout=30_000)


def interactions(page: Page, url: str, browser, top_k: int, repeats: int) -> dict[str, list[float]]:
    """Every Search-page interaction but the stroke, ``repeats`` times each (seconds)."""
    times: dict[str, list[float]] = {name: [] for name in TARGETS_S if name != "stroke"}
    slider = page.locator("[data-testid='stSlider']", has_text="Results (k)").get_by_role("slider")
    for _ in range(repeats):
        for key, count in (("ArrowRight", top_k + 1), ("ArrowLeft", top_k)):  # k up, then back
            number = search_number(page)
            slider.focus()
            times["k"].append(timed(lambda key=key: page.keyboard.press(key),
                                    lambda number=number, count=count: gallery_ready(page, number + 1, count)))
        number = search_number(page)
        times["exclude"].append(timed(lambda: page.locator(".st-key-exclude_query label").click(),
                                      lambda number=number: gallery_ready(page, number + 1, top_k)))
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        times["details"].append(timed(lambda: page.locator(".st-key-details-1 button").first.click(),
                                      lambda: page.wait_for_function(DIALOG_IMAGES_JS, arg=2, polling="raf",
                                                                     timeout=30_000)))
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        dialog = page.get_by_role("dialog")
        times["why"].append(timed(lambda dialog=dialog: dialog.locator(".st-key-why-match label").click(),
                                  lambda dialog=dialog: dialog.get_by_text("Why this match:").first.wait_for(
                                      timeout=60_000)))
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        close_dialog(page)
        number = search_number(page)
        times["to_other_page"].append(timed(
            lambda: page.get_by_role("link", name="Feature caches").click(),
            lambda: page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)))
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        times["back_to_search"].append(timed(lambda: page.get_by_role("link", name="Search").click(),
                                             lambda number=number: gallery_ready(page, number, top_k)))
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        link = page.url
        visitor = browser.new_page(viewport={"width": 1600, "height": 1200})
        times["open_link"].append(timed(lambda visitor=visitor, link=link: visitor.goto(link),
                                        lambda visitor=visitor: gallery_ready(visitor, 1, top_k)))
        visitor.close()
    return times


def measure(data: Path, cache_dir: Path, trials: int, top_k: int, screenshot: Path | None,
            repeats: int = 3, layer: str | None = None) -> dict:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    log = REPO / "test-artifacts" / "app_latency-streamlit.log"
    log.parent.mkdir(exist_ok=True)
    latencies: list[float] = []
    search_ms: list[float] = []
    send_ms: list[float] = []  # mouse-up to the stroke's websocket message, in the page's own clock
    lost: list[dict] = []
    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    with running_dashboard(["--data", str(data), "--cache-dir", str(cache_dir)], log=log) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(f"{url}/?k={top_k}" + (f"&layer={layer}" if layer else ""))  # a link, as a visitor would
        # without a cache the page offers to build one (or starts a quick build): refuse either
        missing = page.get_by_text("no feature cache").or_(page.get_by_text(re.compile(r"^Indexing ")))
        page.locator("canvas.upper-canvas").or_(missing).first.wait_for(timeout=120_000)
        if missing.count():
            raise SystemExit(f"No cache for {data}: run `.venv/bin/vfs index {data}` first.")
        searches = 0
        for trial in range(trials):
            for attempt in range(MAX_ATTEMPTS):
                if searches or attempt:
                    clear_canvas(page)
                else:  # the page has just opened: the canvas accepts strokes once its first rerun is over
                    page.wait_for_function(APP_IDLE_JS, timeout=30_000)
                stroke(page, page.locator("canvas.upper-canvas").bounding_box(), trial)
                page.evaluate(RECORD_SENDS_JS)
                released = page.evaluate("() => performance.now()")
                started = time.perf_counter()
                page.mouse.up()
                try:
                    page.wait_for_function(GALLERY_LOADED_JS, arg=[searches + 1, top_k], polling="raf",
                                           timeout=20_000)
                except PlaywrightError:
                    # no search came of the stroke: count it and draw again (or give up, with a picture)
                    lost.append({"trial": trial, "stroke_on_canvas": drawn_pixels(page) > 0})
                    page.screenshot(path=str(log.with_name(f"app_latency-lost-{len(lost)}.png")), full_page=True)
                    if attempt == MAX_ATTEMPTS - 1:
                        raise
                    continue
                latencies.append(time.perf_counter() - started)
                sends = [moment - released for moment in page.evaluate("() => window.vfsSends") if moment > released]
                send_ms.append(round(sends[0], 1) if sends else math.nan)
                searches += 1
                caption = page.get_by_text(re.compile(r"^Searched [\d,]+ images in")).first.inner_text()
                search_ms.append(float(re.search(r"in (\d+) ms", caption).group(1)))
                break
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        images = int(re.search(r"Searched ([\d,]+) images", caption).group(1).replace(",", ""))
        others = interactions(page, url, browser, top_k, repeats) if repeats else {}
        browser.close()
    steady = latencies[1:] or latencies
    return {"data": str(data), "images": images, "top_k": top_k, "trials": trials, "layer": layer,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
            "first_s": round(latencies[0], 3), "median_s": round(statistics.median(steady), 3),
            "p90_s": round(p90(steady), 3), "max_s": round(max(steady), 3), "target_s": TARGETS_S["stroke"],
            "server_search_ms_median": statistics.median(search_ms), "lost_strokes": lost,
            "stroke_sent_ms_median": statistics.median(send_ms), "stroke_sent_ms": send_ms,
            "latencies_s": [round(v, 3) for v in latencies],
            "interactions": {name: {"median_s": round(statistics.median(values), 3), "p90_s": round(p90(values), 3),
                                    "target_s": TARGETS_S[name], "met": p90(values) <= TARGETS_S[name],
                                    "seconds": [round(v, 3) for v in values]}
                             for name, values in others.items()}}


def open_search_page(browser, url: str, top_k: int, layer: str | None):
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    page.goto(f"{url}/?k={top_k}" + (f"&layer={layer}" if layer else ""))
    page.locator("canvas.upper-canvas").first.wait_for(timeout=120_000)
    page.wait_for_function(APP_IDLE_JS, timeout=30_000)
    return page


def compare_strokes(data: Path, cache_dir: Path, trials: int, top_k: int, setting: str,
                    layer: str | None = None) -> dict:
    """Mouse-up to gallery on two servers at once, strokes alternating between them: the app as ``make app`` starts
    it, and the same app with one Streamlit option changed (``setting``, e.g. ``runner.postScriptGC=true``)."""
    from playwright.sync_api import sync_playwright

    from streamlit.config import get_config_options

    option, _, value = setting.partition("=")
    if option not in get_config_options():
        raise SystemExit(f"{option} is not a Streamlit option.")
    env = {**os.environ, get_config_options()[option].env_var: value}  # e.g. STREAMLIT_RUNNER_POST_SCRIPT_GC
    arguments = ["--data", str(data), "--cache-dir", str(cache_dir)]
    seconds: dict[str, list[float]] = {"as make app starts it": [], setting: []}
    load_before = os.getloadavg()[0]
    with running_dashboard(arguments) as plain_url, running_dashboard(arguments, env=env) as changed_url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        pages = {"as make app starts it": open_search_page(browser, plain_url, top_k, layer),
                 setting: open_search_page(browser, changed_url, top_k, layer)}
        for trial in range(trials + 1):  # the first stroke of each warms its server up and is not counted
            order = list(pages) if trial % 2 == 0 else list(reversed(pages))
            for label in order:
                page = pages[label]
                if trial:
                    clear_canvas(page)
                stroke(page, page.locator("canvas.upper-canvas").bounding_box(), trial)
                started = time.perf_counter()
                page.mouse.up()
                gallery_ready(page, trial + 1, top_k)
                if trial:
                    seconds[label].append(time.perf_counter() - started)
        browser.close()
    summary = {label: {"median_s": round(statistics.median(values), 3), "p90_s": round(p90(values), 3),
                       "seconds": [round(v, 3) for v in values]} for label, values in seconds.items()}
    plain, changed = (statistics.median(values) for values in seconds.values())
    return {"data": str(data), "trials": trials, "top_k": top_k, "setting": setting, "strokes": summary,
            "median_ratio_changed_to_plain": round(changed / plain, 3),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=12)
    parser.add_argument("--layer", help="open the page on this layer (a layer= link), e.g. one already cached")
    parser.add_argument("--repeats", type=int, default=3, help="times each other interaction is measured (0: none)")
    parser.add_argument("--screenshot", type=Path, default=REPO / "test-artifacts" / "app_latency.png")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compare", metavar="OPTION=VALUE",
                        help="instead: strokes alternating between the app as make app starts it and the app with this "
                             "Streamlit option, e.g. runner.postScriptGC=true (Streamlit's default)")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    if args.compare:
        compared = compare_strokes(args.data.resolve(), args.cache_dir.resolve(), args.trials, args.top_k,
                                   args.compare, args.layer)
        print(json.dumps(compared, indent=2))
        return 0
    result = measure(args.data.resolve(), args.cache_dir.resolve(), args.trials, args.top_k, args.screenshot,
                     args.repeats, args.layer)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['images']:,} images, k={result['top_k']}, {result['trials']} strokes: mouse-up to gallery "
              f"first {result['first_s']:.3f} s, then median {result['median_s']:.3f} s, p90 {result['p90_s']:.3f} s, "
              f"max {result['max_s']:.3f} s (sent to the server {result['stroke_sent_ms_median']:.0f} ms after mouse-up "
              f"(median); server-side search median {result['server_search_ms_median']:.0f} ms; "
              f"{len(result['lost_strokes'])} strokes drawn again after no search came of them; load average "
              f"{result['load_average'][0]} → {result['load_average'][1]} on {result['cpus']} CPUs)")
        for name, timing in result["interactions"].items():
            print(f"  {name}: median {timing['median_s']:.3f} s, p90 {timing['p90_s']:.3f} s "
                  f"(target {timing['target_s']} s: {'met' if timing['met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
