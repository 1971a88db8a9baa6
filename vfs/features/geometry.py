"""The one map between image pixels and feature-grid cells, used both ways.

The whole image is resized to the model input (see :class:`vfs.features.models.Preprocessing`), so a
G×G grid partitions any W×H image into equal rectangles: cell (i, j) covers
``x ∈ [j·W/G, (j+1)·W/G)``, ``y ∈ [i·H/G, (i+1)·H/G)``. Masks are area-averaged onto that
partition (exactly, with fractional pixels); result windows map back through the same edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from vfs.errors import MaskError


class Box(NamedTuple):
    """An axis-aligned rectangle in pixels: x0, y0 inclusive; x1, y1 exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float


def _coverage(start: float, stop: float, length: float, grid: int) -> np.ndarray:
    """Fraction of each of ``grid`` equal cells of [0, length) covered by [start, stop)."""
    edges = np.arange(grid + 1, dtype=np.float64) * length / grid  # same arithmetic as window_to_box
    fraction = np.clip(np.minimum(edges[1:], stop) - np.maximum(edges[:-1], start), 0.0, None) / (length / grid)
    return np.where(fraction < 1e-9, 0.0, fraction)  # rounding at a shared edge is not coverage


def _pixel_to_cell_matrix(pixels: int, grid: int) -> np.ndarray:
    """(grid, pixels) matrix whose row i averages the pixels (fractionally) inside cell i."""
    cell = pixels / grid
    edges = np.arange(grid + 1, dtype=np.float64)[:, None] * cell
    start = np.arange(pixels, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(edges[1:], start + 1) - np.maximum(edges[:-1], start), 0.0, None)
    return overlap / cell


def mask_to_grid(mask: np.ndarray, grid: int) -> np.ndarray:
    """Area-average a (H, W) mask of booleans or weights in [0, 1] onto a (grid, grid) array."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise MaskError(f"A mask must be a 2-D array, got shape {mask.shape}.")
    weights = mask.astype(np.float64)
    if not np.isfinite(weights).all() or weights.min() < 0 or weights.max() > 1:
        raise MaskError("Mask weights must lie in [0, 1].")
    rows = _pixel_to_cell_matrix(mask.shape[0], grid)
    cols = _pixel_to_cell_matrix(mask.shape[1], grid)
    return np.clip(rows @ weights @ cols.T, 0.0, 1.0).astype(np.float32)


def box_to_grid(box: Box | tuple[float, float, float, float], image_size: tuple[int, int], grid: int) -> np.ndarray:
    """The (grid, grid) area coverage of a pixel box in a (width, height) image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = image_size
    if not (x1 > x0 and y1 > y0):
        raise MaskError(f"Box {tuple(box)} is empty: it needs x0 < x1 and y0 < y1.")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise MaskError(f"Box {tuple(box)} lies outside the {width}×{height} image.")
    rows = _coverage(y0, y1, height, grid)
    cols = _coverage(x0, x1, width, grid)
    return np.outer(rows, cols).astype(np.float32)


def window_to_box(top: int, left: int, height: int, width: int,
                  image_size: tuple[int, int], grid: int) -> Box:
    """The pixel box of grid cells [top, top+height) × [left, left+width) in a (width, height) image."""
    img_w, img_h = image_size
    return Box(left * img_w / grid, top * img_h / grid, (left + width) * img_w / grid, (top + height) * img_h / grid)


def grid_bounds(grid_mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the cells with positive weight; bottom/right exclusive."""
    rows = np.flatnonzero(grid_mask.max(axis=1) > 0)
    cols = np.flatnonzero(grid_mask.max(axis=0) > 0)
    if rows.size == 0:
        raise MaskError("The region is empty: draw or give a region with some area.")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def load_mask(path: str | Path, image_size: tuple[int, int]) -> np.ndarray:
    """A mask PNG (white = selected, or the alpha channel when it has one) as (H, W) weights."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.size != tuple(image_size):
                raise MaskError(f"Mask {path} is {image.size[0]}×{image.size[1]} but the query image is "
                                f"{image_size[0]}×{image_size[1]}.")
            if image.mode in ("RGBA", "LA") or "transparency" in image.info:
                channel = image.convert("RGBA").getchannel("A")
            else:
                channel = image.convert("L")
            return np.asarray(channel, dtype=np.float32) / 255.0
    except MaskError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MaskError(f"Cannot read mask {path}: {exc}") from None
