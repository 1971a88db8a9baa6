"""Drawings from streamlit-drawable-canvas (Fabric.js JSON) as query regions on the image.

The canvas shows the query image stretched to the canvas size, so a canvas point maps to
image pixels by one scale per axis. Two object types are understood, as Fabric.js 7 writes them:

* ``Rect`` (the rectangle tool): ``left``/``top`` place the origin (``originX``/``originY``) of a
  ``width``×``height`` box, possibly scaled, flipped or rotated when edited;
* ``Path`` (the brush): ``path`` holds absolute canvas points (``M``, ``L``, ``Q``, ``C``
  commands) centred on the bounding box of the path, and ``left``/``top`` place that centre.

A drawing that is one upright rectangle becomes an exact pixel box; anything else is rasterised
(strokes with their width and round caps) and area-averaged onto the feature grid.

A region that arrives without a drawing (from a shared link) is put on the canvas as objects
(:func:`region_objects`): its box as the rectangle tool draws one, or one rectangle per weighted
cell in the brush's colour, more opaque where the weight is higher. The canvas returns them first
in its drawing; while nothing else is drawn the region stays exactly as the link had it, strokes
drawn afterwards are added to it, and once its objects are removed (fewer than the region's come
back: deleted on the canvas, or the page's Clear) the region is gone. (The canvas toolbar's own
reset returns to the drawing the canvas was opened with, i.e. the link's region, with its results.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vfs.features.geometry import mask_to_grid
from vfs.similarity.region import Region, quantise_weights

#: Masks of larger images are drawn at this many pixels on the long side; on the feature grid
#: (which partitions the whole image proportionally) the result is the same.
MAX_MASK_SIDE = 1024
#: A curve segment is sampled at most this many times (points about a quarter stroke width apart).
_MAX_CURVE_STEPS = 16
_ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}
#: The brush and rectangle colour; a region from a link is drawn in it too, so it looks drawn.
DRAWING_COLOUR = (255, 72, 0)
#: Opacity of brush strokes and rectangle outlines (and of a link's full-weight cells).
STROKE_OPACITY = 0.6
#: Opacity of a rectangle's inside.
FILL_OPACITY = 0.25
#: A link's weakest cell is drawn at this share of STROKE_OPACITY, so every weighted cell shows.
FAINTEST_CELL = 0.5
#: The rectangle tool's outline width (canvas pixels).
RECTANGLE_OUTLINE = 2


def drawing_colour(opacity: float) -> str:
    return "rgba({}, {}, {}, {:.3f})".format(*DRAWING_COLOUR, opacity)


@dataclass(frozen=True)
class CanvasFit:
    """Canvas pixels per image pixel along each axis (the background is stretched to the canvas)."""

    scale_x: float
    scale_y: float

    @classmethod
    def stretched(cls, canvas_size: tuple[int, int], image_size: tuple[int, int]) -> CanvasFit:
        return cls(canvas_size[0] / image_size[0], canvas_size[1] / image_size[1])

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) canvas points -> (N, 2) image points."""
        return points / np.array([self.scale_x, self.scale_y])


def _origin(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else _ORIGIN.get(str(value), 0.0)


def _transform(obj: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(M, t) with canvas = M @ local + t, local coordinates measured from the object's centre."""
    sx = float(obj.get("scaleX", 1.0)) * (-1.0 if obj.get("flipX") else 1.0)
    sy = float(obj.get("scaleY", 1.0)) * (-1.0 if obj.get("flipY") else 1.0)
    theta = math.radians(float(obj.get("angle", 0.0)))
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    # Fabric positions the bounding box *including* the stroke, scaled unless strokeUniform
    stroke = float(obj.get("strokeWidth", 0.0) or 0.0)
    width, height = float(obj.get("width", 0.0)), float(obj.get("height", 0.0))
    if obj.get("strokeUniform"):
        outer = np.array([width * abs(sx) + stroke, height * abs(sy) + stroke])
    else:
        outer = np.array([(width + stroke) * abs(sx), (height + stroke) * abs(sy)])
    origin = np.array([float(obj.get("left", 0.0)), float(obj.get("top", 0.0))])
    to_centre = (0.5 - np.array([_origin(obj.get("originX", "left")), _origin(obj.get("originY", "top"))])) * outer
    return rotation @ np.diag([sx, sy]), origin + rotation @ to_centre


def _steps(length: float, spacing: float) -> np.ndarray:
    """Curve parameters after the start, about ``spacing`` apart along a curve of about ``length``."""
    count = int(np.clip(np.ceil(length / spacing), 1, _MAX_CURVE_STEPS))
    return np.linspace(0.0, 1.0, count + 1)[1:, None]


def _path_polylines(commands: list[Any], spacing: float) -> list[np.ndarray]:
    """Absolute SVG-style path commands -> polylines (each (N, 2)); curves sampled every ``spacing``."""
    lines: list[list[np.ndarray]] = []
    current = np.zeros(2)
    start = np.zeros(2)
    for command in commands:
        if not command:
            continue
        op, values = str(command[0]), [float(v) for v in command[1:]]
        points = [np.array(values[i:i + 2]) for i in range(0, len(values) - 1, 2)]
        if op == "M" and points:
            current = start = points[0]
            lines.append([current])
            continue
        if not lines:
            lines.append([current])
        if op == "L" and points:
            lines[-1].append(points[0])
        elif op == "Q" and len(points) == 2:
            control, end = points
            t = _steps(float(np.linalg.norm(control - current) + np.linalg.norm(end - control)), spacing)
            lines[-1].extend((1 - t) ** 2 * current + 2 * (1 - t) * t * control + t**2 * end)
        elif op == "C" and len(points) == 3:
            c1, c2, end = points
            hull = np.linalg.norm(c1 - current) + np.linalg.norm(c2 - c1) + np.linalg.norm(end - c2)
            t = _steps(float(hull), spacing)
            lines[-1].extend((1 - t) ** 3 * current + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * end)
        elif op in ("Z", "z"):
            lines[-1].append(start)
        else:
            continue
        current = lines[-1][-1]
    return [np.array(line) for line in lines if line]


def _rect_corners(obj: dict[str, Any]) -> np.ndarray:
    """The four canvas corners of a Rect's fill area."""
    matrix, offset = _transform(obj)
    w, h = float(obj.get("width", 0.0)) / 2, float(obj.get("height", 0.0)) / 2
    local = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    return local @ matrix.T + offset


def _path_strokes(obj: dict[str, Any]) -> tuple[list[np.ndarray], float]:
    """A Path's polylines in canvas points, and its stroke width in canvas pixels."""
    width = float(obj.get("strokeWidth", 1.0) or 1.0)
    lines = _path_polylines(obj.get("path") or [], spacing=max(width / 4, 1.0))
    if not lines:
        return [], 0.0
    every = np.concatenate(lines)
    centre = (every.min(axis=0) + every.max(axis=0)) / 2  # Fabric's pathOffset
    matrix, offset = _transform(obj)
    if not obj.get("strokeUniform"):
        width *= (abs(float(obj.get("scaleX", 1.0))) + abs(float(obj.get("scaleY", 1.0)))) / 2
    return [(line - centre) @ matrix.T + offset for line in lines], width


def _objects(json_data: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not json_data:
        return []
    return [o for o in json_data.get("objects", []) if isinstance(o, dict) and o.get("type") in ("Rect", "Path")]


def _fill_convex(mask: np.ndarray, corners: np.ndarray) -> None:
    """Set the pixels whose centres lie inside the convex polygon ``corners`` (mask pixel units)."""
    height, width = mask.shape
    (x0, y0), (x1, y1) = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    x0, x1 = int(np.clip(x0, 0, width)), int(np.clip(x1, 0, width))
    y0, y1 = int(np.clip(y0, 0, height)), int(np.clip(y1, 0, height))
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
    sides = []
    for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        sides.append((end[0] - start[0]) * (ys - start[1]) - (end[1] - start[1]) * (xs - start[0]))
    crossing = np.stack(sides)
    mask[y0:y1, x0:x1] |= (crossing >= 0).all(axis=0) | (crossing <= 0).all(axis=0)


def _stroke_line(canvas: ImageDraw.ImageDraw, points: np.ndarray, radius: float) -> None:
    """Draw a polyline ``radius`` thick each side, with round joins and caps (mask pixel units)."""
    centred = [tuple(p) for p in points - 0.5]  # PIL's pixel (i, j) is centred on (i + 0.5, j + 0.5)
    if len(centred) > 1:
        canvas.line(centred, fill=255, width=max(1, round(2 * radius)), joint="curve")
    for x, y in (centred[0], centred[-1]):
        canvas.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)


def drawing_to_mask(json_data: dict[str, Any] | None, fit: CanvasFit, image_size: tuple[int, int],
                    max_side: int = MAX_MASK_SIDE) -> np.ndarray | None:
    """A float32 mask (1 = drawn) over the whole (width, height) image, or None if nothing is drawn.

    Rectangles cover exactly the pixels whose centres they contain, so a box that ends on a cell
    boundary does not spill into the next cell; strokes are drawn by PIL (to within a pixel).
    The mask has the image's size, scaled down so its long side is at most ``max_side``.
    """
    width, height = image_size
    shrink = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    to_mask = np.array([size[0] / width, size[1] / height])
    mask = np.zeros((size[1], size[0]), dtype=bool)
    strokes = Image.new("L", size, 0)
    pen = ImageDraw.Draw(strokes)
    for obj in _objects(json_data):
        if obj["type"] == "Rect":
            _fill_convex(mask, fit.to_image(_rect_corners(obj)) * to_mask)
            continue
        lines, stroke = _path_strokes(obj)
        radius = stroke / 2 * float(np.mean(to_mask / np.array([fit.scale_x, fit.scale_y])))
        for line in lines:
            _stroke_line(pen, fit.to_image(line) * to_mask, radius)
    mask |= np.asarray(strokes) > 0
    return mask.astype(np.float32) if mask.any() else None


def _upright_box(obj: dict[str, Any], fit: CanvasFit,
                 image_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """A Rect that is not rotated, as its box clipped to the image (None if under a pixel is left)."""
    if obj["type"] != "Rect" or float(obj.get("angle", 0.0)) % 90 != 0:
        return None
    corners = fit.to_image(_rect_corners(obj))
    x0, y0 = (float(v) for v in np.maximum(corners.min(axis=0), 0.0))
    x1, y1 = (float(v) for v in np.minimum(corners.max(axis=0), np.array(image_size, dtype=np.float64)))
    return (x0, y0, x1, y1) if x1 - x0 >= 1 and y1 - y0 >= 1 else None


def region_objects(region: Region, fit: CanvasFit, image_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Fabric.js rectangles that show ``region`` on the canvas as if drawn there: its box as the
    rectangle tool draws it (outlined, lightly filled), or each weighted cell filled like a brush
    stroke, fainter where the weight is lower but never fainter than FAINTEST_CELL of a stroke."""
    def rect(x0: float, y0: float, x1: float, y1: float, fill: str, outline: int = 0) -> dict[str, Any]:
        # Fabric's left/top place the outer corner of the outline, so the fill starts half an outline in
        return {"type": "Rect", "left": x0 * fit.scale_x - outline / 2, "top": y0 * fit.scale_y - outline / 2,
                "width": (x1 - x0) * fit.scale_x, "height": (y1 - y0) * fit.scale_y, "originX": "left",
                "originY": "top", "strokeWidth": outline, "strokeUniform": True,
                "stroke": drawing_colour(STROKE_OPACITY) if outline else None, "fill": fill, "selectable": False}

    if region.box is not None:
        return [rect(*region.box, fill=drawing_colour(FILL_OPACITY), outline=RECTANGLE_OUTLINE)]
    assert region.grid_mask is not None
    grid = region.grid_mask.shape[0]
    width, height = image_size
    return [rect(column * width / grid, row * height / grid, (column + 1) * width / grid, (row + 1) * height / grid,
                 fill=drawing_colour(STROKE_OPACITY * (FAINTEST_CELL + (1 - FAINTEST_CELL) * float(weight))))
            for (row, column), weight in np.ndenumerate(region.grid_mask) if weight > 0]


def drawing_to_region(json_data: dict[str, Any] | None, fit: CanvasFit, image_size: tuple[int, int],
                      grid: int, seed: Region | None = None) -> Region | None:
    """The query region a drawing selects (None when nothing usable is drawn).

    ``seed`` is a region the canvas was opened with as :func:`region_objects`: those objects come
    first in the drawing and stand for the seed exactly; anything drawn after them is added to it.
    A drawing with fewer objects than the seed's has lost the seed's objects (deleted on the
    canvas): the seed is gone with them. No drawing at all (the canvas has not answered yet) is the seed.
    """
    objects = _objects(json_data)
    if seed is not None and json_data is None:
        return seed
    if seed is not None and len(objects) >= (seeded := len(region_objects(seed, fit, image_size))):
        drawn = drawing_to_region({"objects": objects[seeded:]}, fit, image_size, grid)
        return seed if drawn is None else seed.combined(drawn, image_size, grid)
    if len(objects) == 1 and (box := _upright_box(objects[0], fit, image_size)) is not None:
        return Region.from_box(box)
    mask = drawing_to_mask(json_data, fit, image_size)
    if mask is None:
        return None
    weights = quantise_weights(mask_to_grid(mask, grid))
    return Region(grid_mask=weights) if weights.any() else None


def canvas_size(image_size: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """The largest (width, height) within the limits with the image's aspect ratio."""
    width, height = image_size
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))
