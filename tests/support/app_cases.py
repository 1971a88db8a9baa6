"""Helpers for the dashboard tests: a constructed dataset whose right answer is known, and drawing.

The query image pastes a patch of a real photograph (the cat's eyes from scikit-image's
``chelsea.png``) onto grass; the target pastes the same patch, elsewhere, onto bricks; the other
images are the packages' photographs. A region drawn around the patch in the query must find
the target first (with the query excluded), at the patch's place.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.support.data import package_photo
from vfs.dashboard.safe_text import WORD_JOINER

SIDE = 448  # 7×7 grid cells of 64 pixels
CANVAS_SIDE = 480  # app_pages/search.py shows a square image at this size
DISTRACTORS = ("astronaut.png", "camera.png", "coffee.png", "coins.png", "rocket.jpg", "chelsea.png",
               "hubble_deep_field.jpg", "gravel.png", "moon.png")
#: Link parameters and file names that hold markup (issue #17): a link to another host, an image fetched from one.
LINK = "[Sign in again](https://evil.example/login)"
IMAGE = "![t](http://127.0.0.1:9/track.png)"


@dataclass(frozen=True)
class ConstructedCase:
    data: Path
    cache_dir: Path
    query: str = "pasted/query.png"
    target: str = "pasted/target.png"
    patch_box: tuple[int, int, int, int] = (64, 64, 256, 256)  # in the query
    target_box: tuple[int, int, int, int] = (192, 192, 384, 384)  # the same patch in the target
    images: int = 2 + len(DISTRACTORS)


def _photo(name: str) -> Image.Image:
    with Image.open(package_photo(name)) as image:
        return image.convert("RGB").resize((SIDE, SIDE))


def make_constructed_dataset(folder: Path) -> None:
    (folder / "pasted").mkdir(parents=True)
    (folder / "photos").mkdir()
    patch = _photo("chelsea.png").crop((120, 20, 320, 220)).resize((192, 192))
    query = _photo("grass.png")
    query.paste(patch, (64, 64))
    query.save(folder / "pasted" / "query.png")
    target = _photo("brick.png")
    target.paste(patch, (192, 192))
    target.save(folder / "pasted" / "target.png")
    for name in DISTRACTORS:
        _photo(name).save(folder / "photos" / f"{Path(name).stem}.jpg", quality=90)


# CommonMark: a backslash before any ASCII punctuation character shows that character literally
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def shown(markdown_source: str) -> str:
    """The text a browser displays for ``markdown_source`` as far as escapes go: AppTest returns the markdown
    source, in which the app backslash-escapes visitor- and file-controlled text (``target\\.png``) and puts
    invisible word joiners where an autolink would start (see :mod:`vfs.dashboard.safe_text`)."""
    return _BACKSLASH_ESCAPE.sub(r"\1", markdown_source).replace(WORD_JOINER, "")  # an invisible character


def make_hostile_dataset(constructed: Path, folder: Path) -> tuple[str, str]:
    """The constructed dataset copied to ``folder``, its query folder named like a link and its photos like
    markdown, HTML and plotly tags; returns the query and target paths."""
    pasted = folder / "[Sign in again](https:evil.example)"
    photos = folder / "<b>x<br>y ![t](http:127.0.0.1:9) **md**"
    shutil.copytree(constructed / "pasted", pasted)
    photos.mkdir()
    for number, photo in enumerate(sorted((constructed / "photos").iterdir())):
        shutil.copy(photo, photos / f'<a href="https:evil.example">click here< **md** {number}.jpg')
    return f"{pasted.name}/query.png", f"{pasted.name}/target.png"


def canvas_key(app: object) -> str:
    return f"canvas:{app.session_state['query'].key}"  # type: ignore[attr-defined]


def draw(app: object, *objects: dict) -> None:
    """Put Fabric.js objects on the current query's canvas, as the browser component would."""
    app.session_state[canvas_key(app)] = {  # type: ignore[attr-defined]
        "drawing": {"raw": {"version": "7.4.0", "objects": list(objects)}, "data": None}, "backgroundFit": None}


def field_png(size: tuple[int, int]) -> bytes:
    """A plain green PNG of ``size`` (width, height): an image to upload."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def open_picker(app: object) -> None:
    """Open the query picker (its uploader is drawn only while it is open) for the next run, as the browser would.

    The browser sends the open expander's state with every rerun; AppTest sends none for a keyed expander (to it a
    block, not a widget), so its state lives in session state alone. Before Streamlit 1.67 AppTest also made every
    run a page change to the script runner (a new PagesManager with no current page), which forgets the state of
    each widget it was not sent: a picker opened once closed again on the next run, and an upload on that run found
    no uploader. Setting it before each run that needs it works at 1.65 and later alike.
    """
    from app_pages.shared.common import PICKER_KEY  # Streamlit: this module is loaded where it is not installed

    app.session_state[PICKER_KEY] = True  # type: ignore[attr-defined]


def upload(app: object, name: str, content: bytes, mime_type: str = "image/png") -> None:
    """Give the picker's uploader a file and rerun; the picker was open on the last run, and stays open."""
    open_picker(app)
    app.file_uploader(key="upload").set_value((name, content, mime_type)).run()  # type: ignore[attr-defined]


def canvas_rect(box: tuple[float, float, float, float], image_side: int = SIDE) -> dict:
    """A Rect as the rectangle tool draws it, around ``box`` (image pixels) on the square canvas."""
    scale = CANVAS_SIDE / image_side
    x0, y0, x1, y1 = (v * scale for v in box)
    return {"type": "Rect", "originX": "left", "originY": "top", "left": x0, "top": y0, "width": x1 - x0,
            "height": y1 - y0, "strokeWidth": 0, "strokeUniform": True, "scaleX": 1, "scaleY": 1, "angle": 0}


def canvas_stroke(points: list[tuple[float, float]], width: float, image_side: int = SIDE) -> dict:
    """A brush Path through ``points`` (image pixels), as Fabric.js 7 serialises a free-hand stroke."""
    scale = CANVAS_SIDE / image_side
    canvas_points = [(x * scale, y * scale) for x, y in points]
    xs, ys = [p[0] for p in canvas_points], [p[1] for p in canvas_points]
    path = [["M", *canvas_points[0]]] + [["L", *p] for p in canvas_points[1:]]
    return {"type": "Path", "originX": "center", "originY": "center", "left": (min(xs) + max(xs)) / 2,
            "top": (min(ys) + max(ys)) / 2, "width": max(xs) - min(xs), "height": max(ys) - min(ys),
            "strokeWidth": width * scale, "strokeUniform": False, "scaleX": 1, "scaleY": 1, "angle": 0, "path": path}


def run_until(app: object, ready: Callable[[object], bool], timeout: float = 90.0) -> None:
    """Rerun the app until ``ready(app)`` (a background build has to finish first)."""
    deadline = time.monotonic() + timeout
    while True:
        app.run()  # type: ignore[attr-defined]
        if ready(app):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the app was not ready within {timeout:.0f} s")
        time.sleep(0.3)
