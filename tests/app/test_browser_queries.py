"""A region set drawn with the mouse in a real headless chromium: two strokes, each added to the query,
then the set's results, their score distribution and a result's Details dialog. Screenshots at 1000 and
1400 px wide go to test-artifacts/."""

from __future__ import annotations

import pytest

from tests.support.app_cases import SIDE
from tests.support.app_server import APP_IDLE_JS, ARTIFACTS, running_dashboard

pytestmark = pytest.mark.browser


def stroke(page, canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    box = canvas.bounding_box()
    scale = box["width"] / SIDE
    page.mouse.move(box["x"] + start[0] * scale, box["y"] + start[1] * scale)
    page.mouse.down()
    for step in range(1, 13):
        x = start[0] + (end[0] - start[0]) * step / 12
        y = start[1] + (end[1] - start[1]) * step / 12
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
    page.mouse.up()
    page.wait_for_timeout(1500)  # the canvas reports the stroke a moment after the mouse is released


@pytest.mark.parametrize("width", [1000, 1400])
def test_two_strokes_added_to_the_query_search_as_a_set(constructed_case, browser, width):
    ARTIFACTS.mkdir(exist_ok=True)
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    with running_dashboard(arguments, log=ARTIFACTS / f"browser-queries-{width}.log") as url:
        page = browser.new_page(viewport={"width": width, "height": 1600})
        page.goto(f"{url}/?x=1")
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=120_000)
        page.get_by_text("Draw on the query image").first.wait_for()
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)

        stroke(page, canvas, (100, 110), (220, 230))
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        page.get_by_role("button", name="+ like this").click()
        page.get_by_text("The query's regions (1)").first.wait_for(timeout=60_000)
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)

        stroke(page, canvas, (300, 300), (400, 400))
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        page.get_by_role("button", name="+ like this").click()
        try:
            page.get_by_text("The query's regions (2)").first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / f"browser-region-set-added-{width}.png"), full_page=True)
        gallery = page.locator(".st-key-set_gallery [data-testid='stImageCaption']")
        gallery.first.wait_for(timeout=60_000)
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        captions = gallery.all_inner_texts()
        assert captions and captions[0].startswith("1.")
        assert not any(caption.endswith("query.png") for caption in captions)
        page.screenshot(path=str(ARTIFACTS / f"browser-region-set-{width}.png"), full_page=True)
        assert "r=" in page.url and page.url.count("r=p") == 2
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)  # the set's score distribution

        page.locator(".st-key-set-details-1 button").first.click()  # the set match's dialog
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Where each region to look for was found").first.wait_for(timeout=60_000)
        dialog.get_by_text("Region 2, like this").first.wait_for(timeout=60_000)
        assert dialog.get_by_text("Every window position").count() == 2 and "= mean(" in dialog.inner_text()
        page.wait_for_function("""() => {
            const images = Array.from(document.querySelectorAll("[role='dialog'] img"));
            return images.length == 7 && images.every((image) => image.complete && image.naturalWidth > 0);
        }""", timeout=60_000)  # all the windows, then each region, its best window and its heatmap
        page.screenshot(path=str(ARTIFACTS / f"browser-region-set-details-{width}.png"), full_page=True)


def test_region_alone_is_a_toggle_beside_the_results_that_the_link_keeps(constructed_case, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    with running_dashboard(arguments, log=ARTIFACTS / "browser-region-alone.log") as url:
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.goto(f"{url}/?x=1")
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=120_000)
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        stroke(page, canvas, (100, 110), (220, 230))
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        page.get_by_text("Searched ").first.wait_for(timeout=60_000)
        assert page.get_by_text("the region alone, without its photo").count() == 0
        toggle = page.locator(".st-key-region_alone")
        assert toggle.is_visible() and toggle.bounding_box()["x"] + toggle.bounding_box()["width"] <= 1000
        toggle.get_by_text("Region alone").click()
        page.get_by_text("the region alone, without its photo").first.wait_for(timeout=60_000)
        page.wait_for_function(APP_IDLE_JS, timeout=60_000)
        assert "alone=1" in page.url
        captions = page.locator("[data-testid='stImageCaption']").all_inner_texts()
        assert any(caption.startswith("1.") and "target.png" in caption for caption in captions), captions
        page.screenshot(path=str(ARTIFACTS / "browser-region-alone-1000.png"), full_page=True)
