"""The dashboard in a real headless chromium: draw with the mouse, get the gallery, open details.

Screenshots go to test-artifacts/ (git-ignored). Needs Debian's chromium at /usr/bin/chromium
(`make browser-deps` installs it); Playwright drives it, no browser download is involved.
"""

from __future__ import annotations

import pytest

from tests.support.app_cases import SIDE, field_png
from tests.support.app_server import (
    APP_IDLE_JS,
    ARTIFACTS,
    GALLERY_LOADED_JS,
    dashboard_server,
    running_dashboard,
)

pytestmark = pytest.mark.browser
#: The results are photographed at these page widths: a laptop beside a sidebar, and a wide screen.
SCREENSHOT_WIDTHS = (1000, 1400)


def drawing_alpha(page, x: float, y: float) -> int:
    """The opacity of the drawing layer (not the background image's) at image pixel (x, y)."""
    return page.locator("canvas.dc-canvas.lower-canvas").evaluate(
        "(c, [x, y]) => c.getContext('2d').getImageData(Math.floor(x * c.width), Math.floor(y * c.height), 1, 1)"
        ".data[3]", [x / SIDE, y / SIDE])


def open_figures(page) -> None:
    """Open the figures under the gallery (built only while open) and wait for the score distribution."""
    page.get_by_text("Score distribution and scores per label").first.click()
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    page.wait_for_function(APP_IDLE_JS, timeout=30_000)


#: Browser-side, given the canvas's host element: the display of the canvas's own toolbar in its shadow root.
TOOLBAR_DISPLAY_JS = """() => {
    for (const host of document.querySelectorAll("[data-testid='stBidiComponentIsolated']")) {
        const toolbar = host.shadowRoot && host.shadowRoot.querySelector(".dc-toolbar");
        if (toolbar) return getComputedStyle(toolbar).display;
    }
    return null;
}"""
#: Browser-side, given an element: does every part of it show its whole content (a label cut off by an ellipsis
#: is wider inside than it shows)?
NOTHING_CUT_OFF_JS = """(root) => Array.from(root.querySelectorAll("*")).every(
    (part) => part.clientWidth === 0 || part.scrollWidth <= part.clientWidth)"""
#: Browser-side: record when the page sends on its websocket (a stroke reaching the server), in performance time.
RECORD_SENDS_JS = """() => {
    window.vfsSends = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) { window.vfsSends.push(performance.now()); return send.call(this, data); };
}"""


def test_mouse_stroke_finds_the_target_and_shows_details(constructed_case, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    with running_dashboard(arguments, log=ARTIFACTS / "browser-streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1700})  # tall enough for the plot
        page.goto(f"{url}/?x=1")  # a link that leaves the query image out of the results
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=120_000)
        # .first: while streamlit reruns, a stale copy of an element can briefly sit beside the new one
        page.get_by_text("Draw on the query image").first.wait_for()
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)  # the canvas's first report has been handled
        page.screenshot(path=str(ARTIFACTS / "browser-1-opened.png"))

        # one set of drawing controls: hovering the canvas does not show its own toolbar (undo, reset, send)
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(400)  # past the toolbar's fade-in delay
        assert page.evaluate(TOOLBAR_DISPLAY_JS) == "none"

        # a stroke across the pasted cat's eyes (image pixels 64..256), drawn with the mouse
        page.evaluate(RECORD_SENDS_JS)
        scale = box["width"] / SIDE
        start, end = (100, 110), (220, 230)
        page.mouse.move(box["x"] + start[0] * scale, box["y"] + start[1] * scale)
        page.mouse.down()
        for step in range(1, 13):
            x = start[0] + (end[0] - start[0]) * step / 12
            y = start[1] + (end[1] - start[1]) * step / 12
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        released = page.evaluate("() => performance.now()")
        page.mouse.up()

        results = constructed_case.images - 1
        page.wait_for_function(GALLERY_LOADED_JS, arg=[1, results], timeout=60_000)
        # the stroke went to the server on mouse-up, not after the canvas's own 200 ms send delay
        sent = [moment - released for moment in page.evaluate("() => window.vfsSends") if moment > released]
        assert sent and sent[0] < 200, sent
        captions = page.locator(".st-key-gallery [data-testid='stImageCaption']").all_inner_texts()
        assert len(captions) == results
        assert captions[0].startswith("1.") and captions[0].endswith("target.png")
        assert not any("query.png" in caption for caption in captions)
        assert "mask=7." in page.url and "q=pasted%2Fquery.png" in page.url
        page.get_by_text("Searched 11 images").first.wait_for()
        # a laptop screen beside the sidebar: the best match and its caption show without scrolling, and no
        # button under the canvas is cut off
        page.set_viewport_size({"width": 1000, "height": 800})
        page.wait_for_timeout(800)
        first_caption = page.locator(".st-key-gallery [data-testid='stImageCaption']").first.bounding_box()
        assert first_caption["y"] + first_caption["height"] <= 800, first_caption
        for key in ("add_region", "add_negative", "clear"):
            assert page.locator(f".st-key-{key}").first.evaluate(NOTHING_CUT_OFF_JS), key
        for width in SCREENSHOT_WIDTHS:
            page.set_viewport_size({"width": width, "height": 1700})
            page.wait_for_timeout(800)  # the layout settles to the new width
            page.screenshot(path=str(ARTIFACTS / f"browser-2-results-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1500, "height": 1700})
        open_figures(page)
        # the page scrolls inside its own container, so a full-page picture stops at the window: the figures
        # under the gallery are photographed one by one (notes above each plot, legends below, nothing on the data)
        for number, figure in enumerate(page.locator(".js-plotly-plot").all(), 1):
            figure.scroll_into_view_if_needed()
            figure.screenshot(path=str(ARTIFACTS / f"browser-2-figure-{number}.png"))

        page.locator(".st-key-details-1 button").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Every window position").first.wait_for(timeout=30_000)
        assert "pasted/target.png" in dialog.inner_text()
        page.wait_for_function("""() => {
            const images = Array.from(document.querySelectorAll("[role='dialog'] img"));
            return images.length == 2 && images.every((image) => image.complete && image.naturalWidth > 0);
        }""", timeout=30_000)  # the best window and the heatmap
        page.screenshot(path=str(ARTIFACTS / "browser-3-details.png"))
        page.keyboard.press("Escape")

        page.get_by_role("link", name="Feature caches").click()
        page.get_by_text("Feature caches").first.wait_for(timeout=30_000)
        page.locator("[data-testid='stDataFrame'] canvas").first.wait_for(timeout=30_000)  # the cache table
        page.wait_for_timeout(500)  # the table draws itself on its canvas just after it appears
        page.screenshot(path=str(ARTIFACTS / "browser-4-index.png"), full_page=True)

        # back on Search, the stroke is on the canvas as it was drawn, and the same search (x=1 kept) shows
        page.get_by_role("link", name="Search").click()
        page.wait_for_function(GALLERY_LOADED_JS, arg=[1, results], timeout=60_000)
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        assert drawing_alpha(page, 160, 170) > 0 and drawing_alpha(page, 30, 400) == 0
        page.screenshot(path=str(ARTIFACTS / "browser-6-back-on-search.png"))
        page.close()


def test_a_linked_region_is_drawn_on_the_canvas_and_strokes_add_to_it(constructed_case, browser):
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    with running_dashboard(arguments, log=ARTIFACTS / "browser-link-streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(f"{url}/?q=pasted%2Fquery.png&box=64,64,256,256&x=1")
        results = constructed_case.images - 1
        page.wait_for_function(GALLERY_LOADED_JS, arg=[1, results], timeout=120_000)
        captions = page.locator(".st-key-gallery [data-testid='stImageCaption']").all_inner_texts()
        assert captions[0].startswith("1.") and captions[0].endswith("target.png")

        # the drawing layer (not the background image's) shows the box, and nothing elsewhere
        def alpha(x: float, y: float) -> int:
            return drawing_alpha(page, x, y)

        assert alpha(150, 150) > 0 and alpha(60, 150) == 0 and alpha(350, 350) == 0
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)

        # a stroke in the bottom-right corner joins the box: the link now carries a grid mask
        canvas = page.locator("canvas.upper-canvas")
        box = canvas.bounding_box()
        scale = box["width"] / SIDE
        page.mouse.move(box["x"] + 380 * scale, box["y"] + 380 * scale)
        page.mouse.down()
        for step in range(1, 9):
            page.mouse.move(box["x"] + (380 + 6 * step) * scale, box["y"] + 380 * scale)
        page.mouse.up()
        page.wait_for_function(GALLERY_LOADED_JS, arg=[2, results], timeout=60_000)
        page.wait_for_function("() => window.location.search.includes('mask=7.')", timeout=30_000)
        assert "box=" not in page.url
        assert alpha(150, 150) > 0  # the linked box is still drawn
        page.screenshot(path=str(ARTIFACTS / "browser-5-link-edited.png"))
        page.close()


#: Browser-side, given a text: is it on the page as a visitor reads it (the invisible word joiners the app puts in
#: file names, vfs.dashboard.safe_text, left out)?
PAGE_SHOWS_JS = """(text) => document.body.innerText.replaceAll("\\u2060", "").includes(text)"""


def test_an_upload_in_the_opened_picker_says_what_is_wrong_or_becomes_the_query(private_case, browser):
    """The uploader as a visitor meets it, in the query picker that is drawn only while open: the picker stays open
    while files are chosen, a bad file says why, a good one becomes the query. The AppTests of uploads re-open the
    picker before each run (tests/support/app_cases.open_picker); this is the same behaviour without that help."""
    arguments = ["--data", str(private_case.data), "--cache-dir", str(private_case.cache_dir)]  # keeps the upload
    ARTIFACTS.mkdir(exist_ok=True)
    with running_dashboard(arguments, log=ARTIFACTS / "browser-picker-upload-streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(url)
        page.locator("canvas.upper-canvas").wait_for(timeout=120_000)
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        page.get_by_text("Query image: choose another from the dataset, or upload one").first.click()
        page.get_by_role("tab", name="Upload an image").click()
        chooser = page.locator("[data-testid='stFileUploaderDropzoneInput']")
        chooser.set_input_files(files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
        page.wait_for_function(PAGE_SHOWS_JS, arg="notes.png: not a recognised image format", timeout=30_000)
        chooser.set_input_files(files=[{"name": "field.png", "mimeType": "image/png", "buffer": field_png((300, 200))}])
        page.wait_for_function(PAGE_SHOWS_JS, arg="field.png · 300×200 pixels", timeout=60_000)
        page.wait_for_function("() => new URLSearchParams(window.location.search).has('u')", timeout=30_000)
        assert (private_case.cache_dir / "uploads").is_dir()
        page.screenshot(path=str(ARTIFACTS / "browser-6-uploaded.png"))
        page.close()


#: Every URL the page's DOM points at: links, images, and anything else that loads (scripts, frames, sources).
DOM_URLS_JS = """() => Array.from(document.querySelectorAll("[href], [src], [srcset]")).flatMap((element) => [
    element.href && element.href.baseVal === undefined ? element.href : element.getAttribute("href"),
    element.src, ...(element.srcset ? element.srcset.split(",").map((part) => part.trim().split(" ")[0]) : [])])
    .filter((url) => url)"""


def _elsewhere(url: str, own: str) -> bool:
    """Whether ``url`` leads to another host than the app's own ``own`` (``http://127.0.0.1:PORT``)."""
    from urllib.parse import urljoin, urlsplit

    absolute = urlsplit(urljoin(own + "/", url))
    return absolute.scheme not in ("data", "blob", "about", "javascript") and (
        f"{absolute.scheme}://{absolute.netloc}" != own)


def test_hostile_links_and_names_reach_no_other_host(hostile_case, browser):
    """Issue #17: link parameters and file names holding markdown links and images, HTML and plotly tags make
    the browser request nothing from another host and put no link or image to one in the page."""
    from urllib.parse import urlencode

    from tests.support.app_cases import IMAGE, LINK

    arguments = ["--data", str(hostile_case.data), "--cache-dir", str(hostile_case.cache_dir)]
    ARTIFACTS.mkdir(exist_ok=True)
    with running_dashboard(arguments, log=ARTIFACTS / "browser-hostile-streamlit.log") as url:
        requests: list[str] = []
        page = browser.new_page(viewport={"width": 1500, "height": 1700})
        page.on("request", lambda request: requests.append(request.url))

        def assert_nothing_elsewhere(where: str) -> None:
            outside = [address for address in requests if _elsewhere(address, url)]
            assert not outside, f"{where}: requests to other hosts {outside}"
            pointing = [address for address in page.evaluate(DOM_URLS_JS) if _elsewhere(address, url)]
            assert not pointing, f"{where}: the page points at other hosts {pointing}: " + str(page.evaluate(
                """() => Array.from(document.querySelectorAll("[href], [src]")).filter((e) => !(e.href || e.src || "")
                .startsWith(location.origin)).map((e) => e.parentElement.parentElement.outerHTML.slice(0, 600))"""))

        # a hostile layer= and box= (reported as link problems), the hostile query folder
        params = {"q": hostile_case.query, "layer": LINK, "box": IMAGE, "k": "12", "x": "1"}
        page.goto(f"{url}/?{urlencode(params)}")
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=120_000)
        page.get_by_text("This link could not be followed exactly").first.wait_for(timeout=60_000)
        page.get_by_text("Draw on the query image").first.wait_for()
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        assert "Sign in again](https" in page.inner_text("body")  # the parameter is shown, as text
        assert_nothing_elsewhere("opened")

        box = canvas.bounding_box()
        scale = box["width"] / SIDE
        start, end = (100, 110), (220, 230)
        page.mouse.move(box["x"] + start[0] * scale, box["y"] + start[1] * scale)
        page.mouse.down()
        for step in range(1, 13):
            page.mouse.move(box["x"] + (start[0] + (end[0] - start[0]) * step / 12) * scale,
                            box["y"] + (start[1] + (end[1] - start[1]) * step / 12) * scale)
        page.mouse.up()
        results = hostile_case.images - 1
        page.wait_for_function(GALLERY_LOADED_JS, arg=[1, results], timeout=60_000)
        open_figures(page)
        captions = page.locator(".st-key-gallery [data-testid='stImageCaption']").all_inner_texts()
        # long names are cut in the middle in captions (in full in the Details tooltip), but still shown as text
        assert captions[0].endswith("target.png") and any('<a href="' in c and '**md**' in c for c in captions)
        page.locator(".st-key-details-1 button").first.click()  # the match dialog
        page.get_by_role("dialog").get_by_text("Every window position").first.wait_for(timeout=30_000)
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "browser-hostile.png"), full_page=True)
        assert_nothing_elsewhere("searched")
        page.keyboard.press("Escape")
        for title in ("Compare", "Dataset map", "Units", "Feature caches"):  # every page, with the same search
            page.get_by_role("link", name=title).click()
            page.wait_for_timeout(1000)
            page.wait_for_function(APP_IDLE_JS, timeout=60_000)
            assert_nothing_elsewhere(title)

        # a hostile model= stops at the model picker with its message
        page.goto(f"{url}/?{urlencode({'model': '**md** <a href=https://evil.example>x</a> ' + IMAGE})}")
        page.get_by_text("**md**").first.wait_for(timeout=60_000)
        page.wait_for_function(APP_IDLE_JS, timeout=30_000)
        assert_nothing_elsewhere("hostile model")
        assert requests  # the listener saw the app's own requests
        page.close()


def _put_upload(url: str, session_id: str, xsrf: str, size: int, chunked: bool = False, file_id: str = "big") -> int:
    """PUT a multipart upload of ``size`` bytes to Streamlit's upload endpoint as the session; the HTTP status."""
    import http.client
    from urllib.parse import urlsplit

    boundary = "vfs-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Xsrftoken": xsrf,
               "Cookie": f"_streamlit_xsrf={xsrf}"}

    def body():  # 64 KiB at a time, never the whole body in this process either
        yield head
        for start in range(0, size, 65536):
            yield bytes(min(65536, size - start))
        yield tail

    try:
        if chunked:  # no Content-Length: the server must count the bytes as they arrive
            connection.request("PUT", f"/_stcore/upload_file/{session_id}/{file_id}", body=body(), headers=headers,
                                encode_chunked=True)
        else:
            headers["Content-Length"] = str(len(head) + size + len(tail))
            connection.request("PUT", f"/_stcore/upload_file/{session_id}/{file_id}", body=body(), headers=headers)
        return connection.getresponse().status
    except (BrokenPipeError, ConnectionResetError):  # the server stopped reading: refused, before the end
        return 413
    finally:
        connection.close()


def test_the_server_refuses_an_upload_above_its_limit(constructed_case, browser):
    """A client bypassing the uploader's own check is stopped by ``server.maxUploadSize`` (1 MB here) on loopback."""
    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    ARTIFACTS.mkdir(exist_ok=True)
    with running_dashboard(arguments, log=ARTIFACTS / "browser-upload-streamlit.log", max_upload_mb=1) as url:
        page, session, xsrf = _open_session(browser, url)
        assert _put_upload(url, session, xsrf, 10_000) == 204  # the session and token are right
        assert _put_upload(url, session, xsrf, 3 * 1024 * 1024) == 413  # announced too large
        assert _put_upload(url, session, xsrf, 3 * 1024 * 1024, chunked=True) == 413  # counted too large
        assert _put_upload(url, "not-a-session", xsrf, 10_000) == 400
        page.close()


def _open_session(browser, url: str):
    """A page on the dashboard, its server session id (read from the websocket) and its XSRF token."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    sessions: list[str] = []

    def read_frame(payload: bytes | str) -> None:
        if isinstance(payload, bytes):
            message = ForwardMsg()
            message.ParseFromString(payload)
            if message.WhichOneof("type") == "new_session":
                sessions.append(message.new_session.initialize.session_id)

    page = browser.new_page()
    page.on("websocket", lambda socket: socket.on("framereceived", read_frame))
    page.goto(url)
    page.locator("canvas.upper-canvas").wait_for(timeout=120_000)
    xsrf = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "_streamlit_xsrf")
    assert sessions
    return page, sessions[0], xsrf


def _uploaded_bytes(url: str) -> int:
    """What the server's upload manager holds, from Streamlit's metrics endpoint."""
    from urllib.request import urlopen

    with urlopen(f"{url.rstrip('/')}/_stcore/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("cache_memory_bytes") and "UploadedFileManager" in line)


def test_uploads_no_uploader_claims_leave_the_server(constructed_case, browser):
    """Files PUT for a session that no uploader claims are released after the grace period (2 s here)."""
    import os
    import time

    arguments = ["--data", str(constructed_case.data), "--cache-dir", str(constructed_case.cache_dir)]
    with dashboard_server(arguments, env={**os.environ, "VFS_UPLOAD_GRACE_S": "2"}) as server:
        page, session, xsrf = _open_session(browser, server.url)
        for number in range(4):
            assert _put_upload(server.url, session, xsrf, 2_000_000, file_id=f"orphan{number}") == 204
        assert _uploaded_bytes(server.url) >= 8_000_000
        deadline = time.monotonic() + 30
        while _uploaded_bytes(server.url) > 2_100_000 and time.monotonic() < deadline:
            time.sleep(1)
        assert _uploaded_bytes(server.url) <= 2_100_000  # only the newest is kept, for the uploader
        page.close()
