"""Matches as pictures in notebooks and the widget: thumbnails with the matched window outlined.

The pictures come from :mod:`vfs.pictures` (shared with the dashboard); a :class:`Gallery` shows
a row of them as HTML in any Jupyter front end without importing IPython.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vfs.features.geometry import Box
from vfs.features.label_names import LabelNames
from vfs.pictures import jpeg_bytes, load_preview, match_picture
from vfs.similarity.exact import Match

NO_NAMES = LabelNames()  # labels shown as their folders are named

THUMB_SIDE = 160


def jpeg_data_url(image: Image.Image, quality: int = 85) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image, quality)).decode("ascii")


def match_thumbnail(root: str | Path, match: Match, side: int = THUMB_SIDE) -> Image.Image:
    """The matched image at most ``side`` pixels on its long side, outside the window dimmed."""
    image, full_size = load_preview(Path(root) / match.path, side)
    return match_picture(image, match.box, full_size)


def region_thumbnail(path: str | Path, box: Box | tuple[float, float, float, float],
                     side: int = THUMB_SIDE) -> Image.Image:
    """A query image with its region's box outlined the way matches are."""
    image, full_size = load_preview(Path(path), side)
    return match_picture(image, box, full_size)


@dataclass(frozen=True)
class Tile:
    image: Image.Image
    caption: str
    tooltip: str = ""


@dataclass(frozen=True)
class Gallery:
    """A titled row of captioned pictures; Jupyter displays it through ``_repr_html_``."""

    tiles: tuple[Tile, ...]
    title: str = ""

    def __repr__(self) -> str:  # the plain-text view of a notebook output; the pictures are in the HTML one
        return f"Gallery({self.title!r}: {', '.join(tile.caption for tile in self.tiles)})"

    def _repr_html_(self) -> str:
        figures = "".join(
            f'<figure style="margin:0;text-align:center;max-width:{tile.image.width}px" '
            f'title="{html.escape(tile.tooltip)}"><img src="{jpeg_data_url(tile.image)}" '
            f'width="{tile.image.width}" height="{tile.image.height}" style="display:block">'
            f'<figcaption style="font:12px sans-serif;overflow-wrap:anywhere">{html.escape(tile.caption)}'
            f"</figcaption></figure>" for tile in self.tiles)
        heading = (f'<div style="font:bold 13px sans-serif;margin:4px 0">{html.escape(self.title)}</div>'
                   if self.title else "")
        return f'{heading}<div style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">{figures}</div>'


def match_caption(rank: int, match: Match, label_names: LabelNames = NO_NAMES) -> str:
    size = f" · {match.scale:g}× size" if match.scale != 1.0 else ""  # found larger or smaller than the query's
    return f"#{rank} {match.score:.3f}" + (f" · {label_names.name(match.label)}" if match.label else "") + size


def gallery(matches: Sequence[Match], root: str | Path, side: int = THUMB_SIDE, title: str = "",
            query: tuple[str | Path, Box | tuple[float, float, float, float]] | None = None,
            label_names: LabelNames = NO_NAMES) -> Gallery:
    """Thumbnails of ``matches`` (images under ``root``), led by the query and its box when given; captions name
    labels by ``label_names`` (a FeatureSearch's ``label_names``)."""
    tiles = []
    if query is not None:
        path, box = query
        tiles.append(Tile(region_thumbnail(path, box, side), "query", str(path)))
    tiles += [Tile(match_thumbnail(root, match, side), match_caption(rank, match, label_names), match.path)
              for rank, match in enumerate(matches, start=1)]
    return Gallery(tuple(tiles), title)
