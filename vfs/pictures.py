"""Pictures for the dashboard: previews, matched windows, similarity heatmaps, region overlays.

All functions take and return RGB PIL images; boxes are in the *original* image's pixels and
are scaled to whatever size the picture is drawn at.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vfs.features.geometry import Box
from vfs.features.images import DEFAULT_MAX_PIXELS, load_image

MATCH_COLOUR = (255, 72, 0)
NEGATIVE_COLOUR = (30, 110, 255)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height
#: Brightness kept outside the matched window.
DIM = 0.35
# Anchors of a perceptually ordered dark-to-bright colour map (after matplotlib's "inferno").
_COLOUR_ANCHORS = np.array([
    [0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
    [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def load_preview(path: str | Path, max_side: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, tuple[int, int]]:
    """An RGB image at most ``max_side`` on its long side, and the full image's (width, height).

    JPEGs are decoded at a reduced scale directly (much faster for large photos).
    """
    with Image.open(path) as opened:
        full = opened.size
        if opened.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
            full = (full[1], full[0])  # load_image rotates the picture upright
        opened.draft("RGB", (max_side, max_side))
        image = load_image(opened, max_pixels=max_pixels)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image, full


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return copy


def _scaled_box(box: Box | tuple[float, float, float, float], full_size: tuple[int, int],
                drawn: Image.Image) -> tuple[float, float, float, float]:
    sx, sy = drawn.width / full_size[0], drawn.height / full_size[1]
    x0, y0, x1, y1 = box
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def match_picture(image: Image.Image, box: Box | tuple[float, float, float, float], full_size: tuple[int, int],
                  outline: int = 3) -> Image.Image:
    """``image`` with everything outside the matched window dimmed and the window outlined."""
    x0, y0, x1, y1 = _scaled_box(box, full_size, image)
    dimmed = Image.eval(image, lambda v: int(v * DIM))
    inside = (round(x0), round(y0), round(x1), round(y1))
    dimmed.paste(image.crop(inside), inside[:2])
    ImageDraw.Draw(dimmed).rectangle((x0, y0, x1 - 1, y1 - 1), outline=MATCH_COLOUR, width=outline)
    return dimmed


def boxes_picture(image: Image.Image, boxes: Sequence[Box | tuple[float, float, float, float]],
                  full_size: tuple[int, int], outline: int = 3) -> Image.Image:
    """``image`` with everything outside every box dimmed and each box outlined: a region set's match, where
    each region to look for was found."""
    dimmed = Image.eval(image, lambda v: int(v * DIM))
    scaled = [_scaled_box(box, full_size, image) for box in boxes]
    for x0, y0, x1, y1 in scaled:
        inside = (round(x0), round(y0), round(x1), round(y1))
        dimmed.paste(image.crop(inside), inside[:2])
    draw = ImageDraw.Draw(dimmed)
    for x0, y0, x1, y1 in scaled:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=MATCH_COLOUR, width=outline)
    return dimmed


def boxes_jpegs(matches: Sequence[tuple[str | Path, Sequence[Box | tuple[float, float, float, float]]]],
                max_side: int, workers: int = 4) -> list[bytes]:
    """JPEG thumbnails of (image path, boxes) pairs (:func:`boxes_picture`), decoded in parallel threads."""
    def thumbnail(match: tuple[str | Path, Sequence[Box | tuple[float, float, float, float]]]) -> bytes:
        path, boxes = match
        image, full_size = load_preview(path, max_side)
        return jpeg_bytes(boxes_picture(image, boxes, full_size))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vfs-thumbnail") as pool:
        return list(pool.map(thumbnail, matches))


def set_region_picture(image: Image.Image, grid_weights: np.ndarray, negative: bool) -> Image.Image:
    """A region of a region set: its cells tinted (:func:`region_picture`), a negative one framed in blue with a
    diagonal, so "not like this" reads at a glance even in a small picture."""
    picture = region_picture(image, grid_weights)
    if negative:
        draw = ImageDraw.Draw(picture)
        draw.rectangle((0, 0, picture.width - 1, picture.height - 1), outline=NEGATIVE_COLOUR, width=6)
        draw.line((0, 0, picture.width, picture.height), fill=NEGATIVE_COLOUR, width=4)
    return picture


def match_jpegs(matches: Sequence[tuple[str | Path, Box | tuple[float, float, float, float]]], max_side: int,
                workers: int = 4) -> list[bytes]:
    """JPEG thumbnails of (image path, matched box) pairs, decoded in parallel threads."""
    def thumbnail(match: tuple[str | Path, Box | tuple[float, float, float, float]]) -> bytes:
        path, box = match
        image, full_size = load_preview(path, max_side)
        return jpeg_bytes(match_picture(image, box, full_size))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vfs-thumbnail") as pool:
        return list(pool.map(thumbnail, matches))


def colour_map(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (..., 3), dark (low) to bright (high)."""
    position = np.clip(values, 0.0, 1.0) * (len(_COLOUR_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_COLOUR_ANCHORS) - 2)
    fraction = (position - low)[..., None]
    colours = _COLOUR_ANCHORS[low] * (1 - fraction) + _COLOUR_ANCHORS[low + 1] * fraction
    return colours.round().astype(np.uint8)


def heatmap_picture(image: Image.Image, window_scores: np.ndarray, window_shape: tuple[int, int], grid: int,
                    best_box: Box | tuple[float, float, float, float] | None = None,
                    full_size: tuple[int, int] | None = None, opacity: float = 0.6) -> Image.Image:
    """The score of every window position, drawn over ``image`` at the window's centre cell.

    ``window_scores`` is (G-h+1, G-w+1) for a window of ``window_shape`` (h, w) cells; the
    colours run from the lowest to the highest score of this image. Cells no window is centred
    on (half a window from the border) keep the plain image.
    """
    rows, cols = window_scores.shape
    h, w = window_shape
    low, high = float(window_scores.min()), float(window_scores.max())
    normalised = (window_scores - low) / (high - low) if high > low else np.ones_like(window_scores)
    # one colour per window position, placed on the cell grid at the window's centre
    cell_colours = np.zeros((grid, grid, 3), dtype=np.uint8)
    covered = np.zeros((grid, grid), dtype=bool)
    top, left = (h - 1) // 2, (w - 1) // 2
    cell_colours[top:top + rows, left:left + cols] = colour_map(normalised)
    covered[top:top + rows, left:left + cols] = True
    size = image.size
    colours = Image.fromarray(cell_colours).resize(size, Image.Resampling.NEAREST)
    alpha = Image.fromarray((covered * int(255 * opacity)).astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    picture = image.copy()
    picture.paste(colours, (0, 0), alpha)
    if best_box is not None and full_size is not None:
        x0, y0, x1, y1 = _scaled_box(best_box, full_size, picture)
        ImageDraw.Draw(picture).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255), width=3)
    return picture


def region_picture(image: Image.Image, grid_weights: np.ndarray, opacity: float = 0.55) -> Image.Image:
    """``image`` with each grid cell tinted by its weight in the query region (the heaviest fully)."""
    grid = grid_weights.shape[0]
    weights = np.clip(grid_weights, 0, 1)
    relative = weights / weights.max() if weights.max() > 0 else weights  # thin strokes stay visible
    alpha = Image.fromarray((relative * 255 * opacity).astype(np.uint8))
    alpha = alpha.resize(image.size, Image.Resampling.NEAREST)
    tint = Image.new("RGB", image.size, MATCH_COLOUR)
    picture = image.copy()
    picture.paste(tint, (0, 0), alpha)
    draw = ImageDraw.Draw(picture)
    for i in range(1, grid):  # cell borders show the resolution the search works at
        x, y = i * image.width / grid, i * image.height / grid
        draw.line((x, 0, x, image.height), fill=(255, 255, 255), width=1)
        draw.line((0, y, image.width, y), fill=(255, 255, 255), width=1)
    return picture


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def attribution_picture(image: Image.Image, attribution: np.ndarray,
                        box: Box | tuple[float, float, float, float] | None = None,
                        full_size: tuple[int, int] | None = None, opacity: float = 0.75) -> Image.Image:
    """``image`` tinted by an attribution map in [0, 1] of the same (height, width): the stronger, the more opaque.

    Pixels with no attribution keep the plain image; ``box`` (in ``full_size`` pixels) is outlined.
    """
    if attribution.shape != (image.height, image.width):
        raise ValueError(f"an attribution map of shape {attribution.shape} does not fit a {image.width}×{image.height} image")
    values = np.clip(attribution, 0.0, 1.0)[..., None]
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    blended = base * (1 - opacity * values) + colour_map(values[..., 0]).astype(np.float32) * (opacity * values)
    picture = Image.fromarray(blended.round().astype(np.uint8))
    if box is not None and full_size is not None:
        x0, y0, x1, y1 = _scaled_box(box, full_size, picture)
        ImageDraw.Draw(picture).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255), width=3)
    return picture
