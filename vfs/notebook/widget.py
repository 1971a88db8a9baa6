"""The search as a notebook widget (anywidget: JupyterLab, Notebook 7, VS Code, Colab).

``vfs.widget(data)`` shows the query image with a brush and a box tool beside the top-k
matches. It searches with :class:`vfs.feature_search.FeatureSearch`, so it shares the engine and the
caches of the CLI and the dashboard. Python reads and sets the state: ``w.query``, ``w.mask``,
``w.box``, ``w.results`` and ``w.search_result``.

Beyond one region (docs/queries.md): ``w.add_region()`` keeps the drawn region in the query's region set
(``negative=True``: results should not resemble it), ``w.regions`` lists the set and ``w.remove_region(i)``
drops one; while the set holds a region the gallery shows the set's results, each with every positive
region's window outlined. ``w.modes()`` groups the top matches of the search (a region set's too) into modes
(shown under the gallery) and ``w.mode = i`` shows only mode ``i``'s matches. The browser's buttons do
the same through messages.

The browser draws on a canvas the size of the query preview (``display`` pixels) and sends the
region through the ``_region`` trait as one of

* ``{}``: no region;
* ``{"kind": "box", "box": [x0, y0, x1, y1], "size": [w, h], "from": ...}``, display pixels;
* ``{"kind": "mask", "png": "data:image/png;base64,...", "size": [w, h], "from": ...}``, a
  ``w``×``h`` PNG whose alpha channel is the weight of each display pixel.

``from`` is ``"browser"`` for what the user drew (Python decodes and searches) and ``"python"``
for what code set (the browser draws it); the browser numbers its drawings (``"drawing"``) so
that one equal to the last is still a change. :func:`decode_region` maps a drawn region into the
query image's pixels; the engine then maps that onto the feature grid (:mod:`vfs.features.geometry`).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets
from PIL import Image

from vfs.analysis.match_modes import (
    DEFAULT_MATCHES,
    MatchMode,
    describe_mode,
    exemplar_matches,
    mode_rows,
    search_modes,
)
from vfs.analysis.subset import top_matches, top_set_matches
from vfs.errors import ImageError, MaskError, VfsError
from vfs.feature_search import FeatureSearch, QueryRegion
from vfs.features.geometry import Box
from vfs.features.label_names import LabelNames
from vfs.notebook.gallery import NO_NAMES, THUMB_SIDE, jpeg_data_url, match_caption, match_thumbnail
from vfs.pictures import MATCH_COLOUR, boxes_picture, fit_within, load_preview, set_region_picture
from vfs.similarity.exact import Match, SearchResult
from vfs.similarity.region_set import RegionSetMatch, RegionSetResult, set_matches

#: Long side of the query picture the user draws on, in display pixels.
PREVIEW_SIDE = 448
#: A data URL larger than this is refused before decoding (a drawn mask is a few kilobytes).
MAX_DATA_URL = 8_000_000
#: Long side of a region set's region pictures and of a mode's exemplars.
SMALL_SIDE = 96


def decode_data_url(url: str, mime: str = "image/png") -> bytes:
    """The bytes of a base64 ``data:`` URL of the given MIME type."""
    prefix = f"data:{mime};base64,"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise MaskError(f"Expected a {mime} data URL, got {str(url)[:40]!r}.")
    if len(url) > MAX_DATA_URL:
        raise MaskError(f"The drawn mask is too large ({len(url):,} characters).")
    try:
        return base64.b64decode(url[len(prefix):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MaskError(f"The drawn mask is not valid base64: {exc}") from None


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def box_mask(box: Box | tuple[float, float, float, float], image_size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 coverage of each pixel by ``box`` (fractional at its edges).

    Area-averaged onto a grid it gives exactly :func:`vfs.features.geometry.box_to_grid` of the box.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = image_size

    def coverage(start: float, stop: float, pixels: int) -> np.ndarray:
        left = np.arange(pixels, dtype=np.float64)
        return np.clip(np.minimum(left + 1, stop) - np.maximum(left, start), 0.0, 1.0)

    return np.outer(coverage(y0, y1, height), coverage(x0, x1, width)).astype(np.float32)


@dataclass(frozen=True)
class DrawnRegion:
    """A region in the query image's pixels: its mask, and its box when it is one rectangle."""

    mask: np.ndarray  # (H, W) float32 weights in [0, 1]
    box: Box | None = None

    @classmethod
    def from_box(cls, box: Box | tuple[float, float, float, float], image_size: tuple[int, int]) -> DrawnRegion:
        """The part of ``box`` inside the image; raises :class:`MaskError` when none is."""
        width, height = image_size
        x0, y0, x1, y1 = (float(v) for v in box)
        clipped = Box(max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
        if not (clipped.x1 > clipped.x0 and clipped.y1 > clipped.y0):
            raise MaskError(f"Box {tuple(box)} has no area inside the {width}×{height} query image.")
        return cls(box_mask(clipped, image_size), clipped)

    @classmethod
    def from_mask(cls, mask: np.ndarray, image_size: tuple[int, int]) -> DrawnRegion:
        mask = np.asarray(mask, dtype=np.float32)
        width, height = image_size
        if mask.shape != (height, width):
            raise MaskError(f"The mask is {mask.shape[1]}×{mask.shape[0]} but the query image is {width}×{height}.")
        if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise MaskError("Mask weights must lie in [0, 1].")
        if not mask.any():
            raise MaskError("The mask is empty: it selects no pixel.")
        return cls(mask)

    def search_arguments(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`FeatureSearch.search`: a box stays exact."""
        return {"box": tuple(self.box)} if self.box is not None else {"mask": self.mask}


def decode_region(wire: dict[str, Any], image_size: tuple[int, int]) -> DrawnRegion | None:
    """A region drawn at display size (see the module docstring) in the query image's pixels.

    Returns None for no region (nothing drawn, a box or strokes of no area); raises
    :class:`MaskError` for a malformed message.
    """
    if not wire:
        return None
    kind = wire.get("kind")
    try:
        display_w, display_h = (int(v) for v in wire["size"])
    except (KeyError, TypeError, ValueError):
        raise MaskError(f"A drawn region needs its display size, got {wire.get('size')!r}.") from None
    if display_w < 1 or display_h < 1:
        raise MaskError(f"Display size {display_w}×{display_h} is empty.")
    width, height = image_size
    if kind == "box":
        try:
            x0, y0, x1, y1 = (float(v) for v in wire["box"])
        except (KeyError, TypeError, ValueError):
            raise MaskError(f"A drawn box needs four numbers, got {wire.get('box')!r}.") from None
        sx, sy = width / display_w, height / display_h
        # a drag may run in any direction and past the picture's edges
        box = (min(x0, x1) * sx, min(y0, y1) * sy, max(x0, x1) * sx, max(y0, y1) * sy)
        try:
            return DrawnRegion.from_box(box, image_size)
        except MaskError:
            return None
    if kind == "mask":
        try:
            with Image.open(io.BytesIO(decode_data_url(wire.get("png", "")))) as drawn:
                drawn.load()
                if drawn.size != (display_w, display_h):
                    raise MaskError(f"The drawn mask is {drawn.size[0]}×{drawn.size[1]}, not the "
                                    f"{display_w}×{display_h} it was drawn at.")
                alpha = drawn.convert("RGBA").getchannel("A")
        except MaskError:
            raise
        except (OSError, ValueError) as exc:
            raise MaskError(f"The drawn mask is not a readable PNG ({type(exc).__name__}).") from None
        if alpha.getbbox() is None:
            return None
        scaled = alpha.resize((width, height), Image.Resampling.BILINEAR) if alpha.size != (width, height) else alpha
        return DrawnRegion.from_mask(np.asarray(scaled, dtype=np.float32) / 255.0, image_size)
    raise MaskError(f"Unknown region kind {kind!r}: expected 'box' or 'mask'.")


def encode_region(region: DrawnRegion, image_size: tuple[int, int], display_size: tuple[int, int]) -> dict[str, Any]:
    """The message that makes the browser draw ``region`` (set from Python) on its canvas."""
    width, height = image_size
    display_w, display_h = display_size
    if region.box is not None:
        sx, sy = display_w / width, display_h / height
        x0, y0, x1, y1 = region.box
        return {"kind": "box", "box": [x0 * sx, y0 * sy, x1 * sx, y1 * sy], "size": [display_w, display_h],
                "from": "python"}
    alpha = Image.fromarray(np.round(region.mask * 255).astype(np.uint8), "L")
    alpha = alpha.resize((display_w, display_h), Image.Resampling.BILINEAR)
    picture = Image.new("RGBA", (display_w, display_h), MATCH_COLOUR + (0,))
    picture.putalpha(alpha)
    return {"kind": "mask", "png": png_data_url(picture), "size": [display_w, display_h], "from": "python"}


def display_size(image_size: tuple[int, int], side: int = PREVIEW_SIDE) -> tuple[int, int]:
    """The query's size on screen: ``side`` pixels on its long side, small images enlarged."""
    width, height = image_size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def match_payload(matches: list[Match], root: str | Path, side: int = THUMB_SIDE,
                  label_names: LabelNames = NO_NAMES) -> list[dict[str, Any]]:
    """What the browser shows of each match: thumbnail (window outlined), caption (labels by name), score, box."""
    return [{"rank": rank, "path": match.path, "label": match.label, "label_name": label_names.name(match.label),
             "score": round(match.score, 4), "box": [round(v, 1) for v in match.box],
             "caption": match_caption(rank, match, label_names),
             "thumb": jpeg_data_url(match_thumbnail(root, match, side))}
            for rank, match in enumerate(matches, start=1)]


def set_match_payload(matches: list[RegionSetMatch], root: str | Path, side: int = THUMB_SIDE,
                      label_names: LabelNames = NO_NAMES) -> list[dict[str, Any]]:
    """What the browser shows of a region set's match: every positive region's window outlined, and its caption."""
    payload = []
    for rank, match in enumerate(matches, start=1):
        image, full_size = load_preview(Path(root) / match.path, side)
        label = f" · {label_names.name(match.label)}" if match.label else ""
        payload.append({"rank": rank, "path": match.path, "label": match.label, "score": round(match.score, 4),
                        "boxes": [[round(v, 1) for v in box] for box in match.boxes],
                        "caption": f"#{rank} {match.score:.3f}{label}",
                        "thumb": jpeg_data_url(boxes_picture(image, match.boxes, full_size))})
    return payload


def region_picture_of(region: QueryRegion, feature_search: FeatureSearch, side: int = SMALL_SIDE) -> Image.Image:
    """A region of the set as a small picture: its grid cells tinted, a negative one framed and crossed."""
    if isinstance(region.image, (str, Path)):
        picture, size = load_preview(region.image, side)
    else:
        opened = Image.open(io.BytesIO(region.image)) if isinstance(region.image, bytes) else region.image
        size, picture = opened.size, fit_within(opened.convert("RGB"), side)
    weights = feature_search.grid_mask(size, mask=region.mask, box=region.box)
    return set_region_picture(picture, weights, region.negative)


class SearchWidget(anywidget.AnyWidget):
    """Draw a region on the query image; see the top-k matches. Create it with :func:`widget`."""

    _esm = Path(__file__).with_name("widget.js")
    _css = Path(__file__).with_name("widget.css")

    _view = traitlets.Dict().tag(sync=True)  # the query picture: src, width, height, name
    _region = traitlets.Dict().tag(sync=True)
    _matches = traitlets.List().tag(sync=True)
    _regions = traitlets.List().tag(sync=True)  # the region set: thumb, negative, name
    _modes = traitlets.List().tag(sync=True)  # the modes found: text, exemplar thumbs
    _mode = traitlets.Int(-1).tag(sync=True)  # the mode the gallery shows, -1 for all
    _status = traitlets.Unicode("").tag(sync=True)
    _error = traitlets.Unicode("").tag(sync=True)
    top_k = traitlets.Int(8).tag(sync=True)
    exclude_query = traitlets.Bool(False).tag(sync=True)
    brush_size = traitlets.Int(28).tag(sync=True)  # display pixels

    def __init__(self, feature_search: FeatureSearch, query: str | Path | None = None, top_k: int = 8,
                 exclude_query: bool = False, scales: Sequence[float] = (1.0,), region_alone: bool = False,
                 **kwargs: Any):
        self.feature_search = feature_search
        self._scales = tuple(float(s) for s in scales)
        self._region_alone = region_alone
        self._query: Path | None = None
        self._query_size: tuple[int, int] = (0, 0)
        self._drawn: DrawnRegion | None = None
        self._result: SearchResult | RegionSetResult | None = None
        self._set: list[QueryRegion] = []
        self._found: list[MatchMode] = []
        self._shown: list[Match] | list[RegionSetMatch] = []
        super().__init__(top_k=top_k, exclude_query=exclude_query, **kwargs)
        self.on_msg(self._handle_message)
        if query is None and len(feature_search.cache):
            query = feature_search.data / feature_search.cache.paths[0]
        if query is not None:
            self.query = query

    # --- state readable and settable from Python ---------------------------------------------

    @property
    def query(self) -> Path | None:
        """The query image; set a path (absolute, or relative to the dataset folder) to change it."""
        return self._query

    @query.setter
    def query(self, path: str | Path) -> None:
        path = Path(path).expanduser()
        if not path.is_file() and (self.feature_search.data / path).is_file():
            path = self.feature_search.data / path
        if not path.is_file():
            raise ImageError(f"{path}: file not found")
        preview, size = load_preview(path, PREVIEW_SIDE)  # raises ImageError for what cannot be read
        shown = display_size(size)
        if preview.size != shown:
            preview = preview.resize(shown, Image.Resampling.LANCZOS)
        self._query, self._query_size = path, size
        self._drawn = None
        self._view = {"src": jpeg_data_url(preview, 90), "width": shown[0], "height": shown[1],
                      "name": self._query_name(path), "size": list(size)}
        self._region = {}
        if self._set:  # the set's results stay while the next region is drawn on another image
            self._status = self._set_status()
        else:
            self._search()

    @property
    def mask(self) -> np.ndarray | None:
        """The region as (H, W) float32 weights in the query image's pixels, or None."""
        return None if self._drawn is None else self._drawn.mask

    @mask.setter
    def mask(self, mask: np.ndarray | None) -> None:
        self._set_region(None if mask is None else DrawnRegion.from_mask(mask, self._query_size))

    @property
    def box(self) -> Box | None:
        """The region's box in the query image's pixels when it is one rectangle, else None."""
        return None if self._drawn is None else self._drawn.box

    @box.setter
    def box(self, box: Box | tuple[float, float, float, float] | None) -> None:
        self._set_region(None if box is None else DrawnRegion.from_box(box, self._query_size))

    @property
    def scales(self) -> tuple[float, ...]:
        """The object sizes searched, relative to the region's (``MULTI_SCALES``: ½ to 2×); each level must be indexed."""
        return self._scales

    @scales.setter
    def scales(self, scales: Sequence[float]) -> None:
        self._scales = tuple(float(s) for s in scales)
        self._search()

    @property
    def region_alone(self) -> bool:
        """Whether the region's features are its own, without its photo (:mod:`vfs.features.region_alone`)."""
        return self._region_alone

    @region_alone.setter
    def region_alone(self, alone: bool) -> None:
        self._region_alone = bool(alone)
        self._search()

    @property
    def results(self) -> list[Match] | list[RegionSetMatch]:
        """The matches shown, best first (a region set's: :class:`RegionSetMatch`, with every positive's box);
        only the chosen mode's when :attr:`mode` is set."""
        return list(self._shown)

    @property
    def search_result(self) -> SearchResult | RegionSetResult | None:
        """The whole last search, with every image's score (``.scores``)."""
        return self._result

    # --- the region set: several regions, some negative ---------------------------------------

    @property
    def regions(self) -> list[QueryRegion]:
        """The query's region set, in order; while it holds a region the gallery shows the set's results."""
        return list(self._set)

    def add_region(self, region: QueryRegion | None = None, *, negative: bool = False) -> None:
        """Add ``region`` to the set, or the region drawn on the query (``negative``: results should not look like
        it); the canvas is cleared for the next region."""
        if region is None:
            if self._drawn is None or self._query is None:
                raise VfsError("Draw a region (or set w.box or w.mask) before adding it to the query.")
            region = QueryRegion(self._query, negative=negative, **self._drawn.search_arguments())
            self._drawn = None
            self._region = {}
        picture = region_picture_of(region, self.feature_search)  # raises for a region that cannot be shown
        name = self._query_name(Path(region.image)) if isinstance(region.image, (str, Path)) else "an image"
        self._set.append(region)
        self._regions = [*self._regions, {"thumb": jpeg_data_url(picture), "negative": region.negative,
                                          "name": name}]
        self._search()

    def remove_region(self, position: int) -> None:
        """Drop region ``position`` (from 0) of the set."""
        if not 0 <= position < len(self._set):
            raise IndexError(f"The query's region set has {len(self._set)} regions, not a region {position}.")
        del self._set[position]
        self._regions = [shown for i, shown in enumerate(self._regions) if i != position]
        self._search()

    def clear_regions(self) -> None:
        self._set.clear()
        self._regions = []
        self._search()

    # --- modes: the top matches grouped by what their windows look like ------------------------

    def modes(self, n: int = DEFAULT_MATCHES) -> list[MatchMode]:
        """Group the top ``n`` matches of the last search (one region at one size or several, or a region set) into
        modes, largest first, and show each one's size, label mix and exemplars under the gallery."""
        if self._result is None:
            raise VfsError("Modes group the matches of a search: draw a region (or build a region set) first.")
        if int(np.isfinite(self._result.scores).sum()) < 3:
            raise VfsError("Too few images were scored to group them into modes.")
        self._found = search_modes(self.feature_search, self._result, n=n)
        self._modes = [{"text": describe_mode(mode, self.feature_search.label_name), "thumbs": self._exemplar_thumbs(mode)}
                       for mode in self._found]
        self._mode = -1
        return list(self._found)

    def _exemplar_thumbs(self, mode: MatchMode) -> list[str]:
        fs = self.feature_search
        if isinstance(self._result, RegionSetResult):  # every positive region's window outlined
            return [payload["thumb"] for payload in set_match_payload(
                set_matches(fs.cache, self._result, mode.exemplars), fs.data, SMALL_SIDE)]
        return [jpeg_data_url(match_thumbnail(fs.data, match, SMALL_SIDE))
                for match in exemplar_matches(mode, self._result, fs.cache)]

    @property
    def mode(self) -> int | None:
        """The mode (from 0, of the last :meth:`modes`) whose matches the gallery shows; None for all."""
        return None if self._mode < 0 else self._mode

    @mode.setter
    def mode(self, position: int | None) -> None:
        if position is not None and not 0 <= position < len(self._found):
            raise IndexError(f"There are {len(self._found)} modes (call w.modes() first), not a mode {position}.")
        self._mode = -1 if position is None else position

    # --- internals ---------------------------------------------------------------------------

    def _query_name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.feature_search.data.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _ready_text(self) -> str:
        fs = self.feature_search
        return (f"{len(fs.cache):,} images · {fs.model.label} · {fs.layer.name} · grid {fs.grid}×{fs.grid}"
                " — draw a region")

    def _set_region(self, region: DrawnRegion | None) -> None:
        if self._query is None:
            raise VfsError("Set w.query before a region.")
        self._drawn = region
        shown = (self._view["width"], self._view["height"])
        self._region = {} if region is None else encode_region(region, self._query_size, shown)
        self._search()

    @traitlets.observe("_region")
    def _region_drawn(self, change: dict[str, Any]) -> None:
        if change["new"].get("from") == "python" or self._query is None:
            return  # set through w.mask / w.box, which decoded and searched already
        try:
            self._drawn = decode_region(change["new"], self._query_size)
        except MaskError as exc:
            self._drawn = None
            self._fail(exc)
        else:
            if self._set:  # the set's results stay; the drawing joins them once added
                self._status = self._set_status()
            else:
                self._search()
        self.send({"type": "searched"})  # the browser shows "Searching…" until this arrives

    @traitlets.observe("top_k", "exclude_query")
    def _options_changed(self, change: dict[str, Any]) -> None:
        if self._drawn is not None or self._set:
            self._search()

    @traitlets.observe("_mode")
    def _mode_chosen(self, change: dict[str, Any]) -> None:
        if self._result is None or not self._found or change["new"] >= len(self._found):
            return  # no modes (a new search forgets them)
        fs = self.feature_search
        if isinstance(self._result, RegionSetResult):
            rows = (np.ones(len(self._result.scores), dtype=bool) if change["new"] < 0 else
                    mode_rows(self._found[change["new"]], len(self._result.scores)))
            kept = top_set_matches(self._result, fs.cache, rows, max(1, self.top_k))
            self._show(kept, set_match_payload(kept, fs.data, label_names=fs.label_names))
            return
        if change["new"] < 0:
            shown = list(self._result.matches)
        else:
            rows = mode_rows(self._found[change["new"]], len(self._result.scores))
            shown = top_matches(self._result, fs.cache, rows, max(1, self.top_k))
        self._show(shown, match_payload(shown, fs.data, label_names=fs.label_names))

    def _show(self, shown: list[Match] | list[RegionSetMatch], payload: list[dict[str, Any]]) -> None:
        self._shown = shown
        self._matches = payload

    def _set_status(self) -> str:
        positives = sum(not r.negative for r in self._set)
        negatives = len(self._set) - positives
        text = f"{positives} region{'s' * (positives != 1)} to look for"
        text += f", {negatives} not to" if negatives else ""
        return text + (" · add the drawing to search with it" if self._drawn is not None else "")

    def _forget_modes(self) -> None:
        self._found = []
        self._modes = []
        self._mode = -1

    def _search(self) -> None:
        self._forget_modes()
        if self._set:
            self._search_set()
            return
        if self._drawn is None or self._query is None:
            self._result = None
            self._show([], [])
            self._error = ""
            self._status = self._ready_text() if self._query is not None else ""
            return
        try:
            result = self.feature_search.search(self._query, top_k=max(1, self.top_k),
                                                exclude_query=self.exclude_query, region_alone=self._region_alone,
                                                **({} if self._scales == (1.0,) else {"scales": self._scales}),
                                                **self._drawn.search_arguments())
            payload = match_payload(result.matches, self.feature_search.data,
                                    label_names=self.feature_search.label_names)
        except (VfsError, ValueError, OSError) as exc:
            self._fail(exc)
            return
        self._searched(result, payload, "box region" if self._drawn.box is not None else "mask region")

    def _search_set(self) -> None:
        if all(region.negative for region in self._set):
            self._fail(VfsError("The query holds only negative regions: add a region to look for."))
            return
        fs = self.feature_search
        try:
            result = fs.search_regions(self._set, top_k=max(1, self.top_k), exclude_query=self.exclude_query,
                                       scales=self._scales, region_alone=self._region_alone)
            payload = set_match_payload(result.matches, fs.data, label_names=fs.label_names)
        except (VfsError, ValueError, OSError) as exc:
            self._fail(exc)
            return
        self._searched(result, payload, self._set_status())

    def _searched(self, result: SearchResult | RegionSetResult, payload: list[dict[str, Any]], query: str) -> None:
        self._result = result
        self._show(list(result.matches), payload)
        self._error = ""
        self._status = (f"top {len(result.matches)} of {len(result.scores):,} images · {query} · "
                        f"{result.seconds * 1000:.0f} ms")

    def _fail(self, error: Exception) -> None:
        self._result = None
        self._show([], [])
        self._error = str(error)

    def _handle_message(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        kind = content.get("type")
        try:
            if kind == "use-as-query":
                rank = int(content.get("rank", 0))
                if 1 <= rank <= len(self.results):
                    self.query = self.feature_search.data / self.results[rank - 1].path
            elif kind == "add-region":
                self.add_region(negative=bool(content.get("negative")))
            elif kind == "remove-region":
                self.remove_region(int(content.get("position", -1)))
            elif kind == "find-modes":
                self.modes()
        except (VfsError, OSError, IndexError) as exc:  # OSError: the file changed since it was indexed
            self._error = str(exc)
        self.send({"type": "searched"})  # the browser shows what Python made of the click


def widget(data: str | Path | FeatureSearch, query: str | Path | None = None, *, top_k: int = 8,
           exclude_query: bool = False, index: bool = True, scales: Sequence[float] = (1.0,),
           region_alone: bool = False, **options: Any) -> SearchWidget:
    """The search as a notebook widget over ``data`` (a dataset folder or a :class:`FeatureSearch`).

    ``options`` are those of :class:`FeatureSearch` (``model``, ``layer``, ``grid``, ``weights``,
    ``cache_dir``, ...). With ``index`` the cache is brought up to date first (only new or changed
    images are extracted), with the image-pyramid level of every one of ``scales`` (e.g.
    :data:`~vfs.similarity.scales.MULTI_SCALES`: objects half to twice the region's size; level 0.5 costs four
    times the base's indexing). ``region_alone``: the region's features without its photo (docs/queries.md).
    ``query`` defaults to the dataset's first image.
    """
    if isinstance(data, FeatureSearch):
        if options:
            raise TypeError(f"Options {sorted(options)} apply only when data is a folder, not a FeatureSearch.")
        feature_search = data
    else:
        feature_search = FeatureSearch(data, **options)
    if index:
        feature_search.index()
        for scale in scales:
            if scale != 1.0:
                feature_search.scale_level(scale).index()
    return SearchWidget(feature_search, query=query, top_k=top_k, exclude_query=exclude_query, scales=scales,
                        region_alone=region_alone)
