"""Canvas drawings (Fabric.js JSON) to regions in image pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfs.dashboard.canvas import (
    FAINTEST_CELL,
    STROKE_OPACITY,
    CanvasFit,
    drawing_colour,
    drawing_to_mask,
    drawing_to_region,
    region_objects,
)
from vfs.features.geometry import box_to_grid
from vfs.similarity.region import Region


def rect(left, top, width, height, **extra):
    return {"type": "Rect", "left": left, "top": top, "width": width, "height": height, "originX": "left",
            "originY": "top", "strokeWidth": 0, **extra}


def path(points, stroke_width, **extra):
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    commands = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
    return {"type": "Path", "originX": "center", "originY": "center", "left": (min(xs) + max(xs)) / 2,
            "top": (min(ys) + max(ys)) / 2, "width": max(xs) - min(xs), "height": max(ys) - min(ys),
            "strokeWidth": stroke_width, "path": commands, **extra}


def drawing(*objects):
    return {"version": "7.4.0", "objects": list(objects)}


HALF = CanvasFit.stretched((300, 200), (600, 400))  # the canvas shows the image at half size


def test_one_upright_rectangle_is_an_exact_box_in_image_pixels():
    region = drawing_to_region(drawing(rect(30, 20, 60, 40)), HALF, (600, 400), grid=7)
    assert region is not None and region.box == (60, 40, 180, 120)


def test_rectangle_stroke_and_origin_follow_fabric_geometry():
    # Fabric positions the box including its stroke: left/top is the outer corner, the fill is inset
    stroked = rect(30, 20, 60, 40, strokeWidth=10, strokeUniform=True)
    assert drawing_to_region(drawing(stroked), HALF, (600, 400), 7).box == (70, 50, 190, 130)
    centred = rect(60, 40, 60, 40, originX="center", originY="center")
    assert drawing_to_region(drawing(centred), HALF, (600, 400), 7).box == (60, 40, 180, 120)


def test_scaled_rectangle_uses_its_scale():
    region = drawing_to_region(drawing(rect(30, 20, 30, 20, scaleX=2, scaleY=2)), HALF, (600, 400), 7)
    assert region.box == (60, 40, 180, 120)


def test_rectangle_outside_the_image_is_clipped_or_ignored():
    assert drawing_to_region(drawing(rect(-50, -50, 100, 100)), HALF, (600, 400), 7).box == (0, 0, 100, 100)
    assert drawing_to_region(drawing(rect(400, 300, 50, 50)), HALF, (600, 400), 7) is None


def test_rotated_rectangle_becomes_a_mask_of_its_area():
    rotated = rect(150, 100, 80, 80, originX="center", originY="center", angle=45)
    region = drawing_to_region(drawing(rotated), HALF, (600, 400), grid=20)
    assert region is not None and region.box is None
    mask = drawing_to_mask(drawing(rotated), HALF, (600, 400))
    assert mask.sum() == pytest.approx(160 * 160, rel=0.03)  # area is kept under rotation
    assert mask[200, 300] == 1 and mask[200 - 105, 300 - 105] == 0  # centre in, old corner out


def test_brush_stroke_covers_its_width_along_the_path():
    stroke = path([(50, 100), (250, 100)], stroke_width=20)
    mask = drawing_to_mask(drawing(stroke), HALF, (600, 400))
    # in image pixels: from x=100 to 500 at y=200, 40 pixels wide, with round caps
    assert mask[200, 300] == 1 and mask[181, 300] == 1 and mask[177, 300] == 0
    assert mask[200, 85] == 1 and mask[200, 75] == 0  # cap reaches one half-width beyond the end
    assert mask.sum() == pytest.approx(400 * 40 + np.pi * 20**2, rel=0.05)


def test_moved_stroke_is_drawn_where_it_was_moved():
    stroke = path([(50, 100), (150, 100)], stroke_width=10)
    moved = dict(stroke, left=stroke["left"] + 50, top=stroke["top"] + 30)  # dragged in edit mode
    mask = drawing_to_mask(drawing(moved), HALF, (600, 400))
    assert mask[260, 200] == 1 and mask[200, 200] == 0


def test_curved_stroke_follows_its_quadratic_segments():
    curve = {"type": "Path", "originX": "center", "originY": "center", "left": 100, "top": 75, "strokeWidth": 4,
             "path": [["M", 50, 100], ["Q", 100, 0, 150, 100]]}
    curve["left"], curve["top"] = 100, 75  # centre of the sampled curve's bounding box (y from 50 to 100)
    mask = drawing_to_mask(drawing(curve), CanvasFit(1.0, 1.0), (200, 150))
    assert mask[50, 100] == 1  # the apex of the curve, not its control point
    assert mask[20, 100] == 0 and mask[100, 100] == 0


def test_strokes_and_rectangles_combine_into_one_grid_mask():
    both = drawing(rect(0, 0, 150, 100), path([(160, 150), (290, 150)], 10))
    region = drawing_to_region(both, HALF, (600, 400), grid=2)
    assert region is not None and region.grid_mask is not None
    assert region.grid_mask[0, 0] == 1.0 and region.grid_mask[0, 1] == 0.0
    assert 0 < region.grid_mask[1, 1] < 0.5


def test_nothing_drawn_gives_no_region():
    assert drawing_to_region(None, HALF, (600, 400), 7) is None
    assert drawing_to_region(drawing(), HALF, (600, 400), 7) is None
    text = {"type": "IText", "left": 10, "top": 10, "width": 50, "height": 20, "text": "hi"}
    assert drawing_to_region(drawing(text), HALF, (600, 400), 7) is None


def test_huge_images_get_a_proportionally_smaller_mask():
    mask = drawing_to_mask(drawing(rect(0, 0, 150, 100)), CanvasFit.stretched((300, 200), (12000, 8000)),
                           (12000, 8000), max_side=1200)
    assert mask.shape == (800, 1200)
    assert mask[:400, :600].all() and not mask[400:, :].any()


@given(st.integers(0, 250), st.integers(0, 150), st.integers(2, 50), st.integers(2, 50))
def test_box_region_weights_match_the_box_on_any_grid(left, top, width, height):
    region = drawing_to_region(drawing(rect(left, top, width, height)), HALF, (600, 400), grid=7)
    x0, y0 = 2 * left, 2 * top
    x1, y1 = min(600, 2 * (left + width)), min(400, 2 * (top + height))
    assert region.box == (x0, y0, x1, y1)
    np.testing.assert_allclose(region.grid_weights((600, 400), 7), box_to_grid((x0, y0, x1, y1), (600, 400), 7))


def test_a_linked_box_is_drawn_where_it_is_and_stays_exact_until_more_is_drawn():
    seed = Region(box=(61, 40, 181, 120))
    objects = region_objects(seed, HALF, (600, 400))
    assert len(objects) == 1
    assert drawing_to_region(drawing(*objects), HALF, (600, 400), 7).box == seed.box  # the rectangle is the box
    assert drawing_to_region(drawing(*objects), HALF, (600, 400), 7, seed=seed) is seed
    assert drawing_to_region(None, HALF, (600, 400), 7, seed=seed) is seed  # before the canvas answers


def test_a_linked_mask_shows_each_weighted_cell_shaded_by_its_weight():
    weights = np.zeros((4, 4), dtype=np.float32)
    weights[1, 2], weights[3, 0] = 1.0, 0.2
    seed = Region.from_weights(weights)
    objects = region_objects(seed, HALF, (600, 400))
    assert len(objects) == 2
    full, faint = objects
    assert (full["left"], full["top"], full["width"], full["height"]) == (150, 50, 75, 50)  # canvas pixels
    assert float(full["fill"].rsplit(",", 1)[1].rstrip(")")) > float(faint["fill"].rsplit(",", 1)[1].rstrip(")"))
    covered = drawing_to_region(drawing(*objects), HALF, (600, 400), 4)
    np.testing.assert_array_equal(covered.grid_mask, (weights > 0).astype(np.float32))
    assert drawing_to_region(drawing(*objects), HALF, (600, 400), 4, seed=seed) is seed


def test_strokes_drawn_over_a_linked_region_are_added_to_it():
    weights = np.zeros((2, 2), dtype=np.float32)
    weights[0, 0] = 0.4
    seed = Region.from_weights(weights)
    stroke = path([(160, 150), (290, 150)], 10)  # the bottom-right cell, thinly
    region = drawing_to_region(drawing(*region_objects(seed, HALF, (600, 400)), stroke), HALF, (600, 400), 2,
                               seed=seed)
    alone = drawing_to_region(drawing(stroke), HALF, (600, 400), 2)
    assert region.grid_mask[0, 0] == pytest.approx(0.4, abs=1 / 255)  # the link's weight, not the rectangle's 1
    assert region.grid_mask[1, 1] == alone.grid_mask[1, 1] > 0
    assert region.grid_mask[0, 1] == region.grid_mask[1, 0] == 0
    boxed = drawing_to_region(drawing(*region_objects(Region(box=(0, 0, 300, 200)), HALF, (600, 400)), stroke),
                              HALF, (600, 400), 2, seed=Region(box=(0, 0, 300, 200)))
    assert boxed.grid_mask[0, 0] == 1 and boxed.grid_mask[1, 1] == alone.grid_mask[1, 1]


def test_a_linked_region_looks_drawn_in_the_drawing_colour():
    weights = np.zeros((4, 4), dtype=np.float32)
    weights[0, 0], weights[2, 2] = 1.0, 1 / 255
    faintest = min(float(o["fill"].rsplit(",", 1)[1].rstrip(")"))
                   for o in region_objects(Region.from_weights(weights), HALF, (600, 400)))
    assert faintest >= STROKE_OPACITY * FAINTEST_CELL - 1e-3  # a weak cell still shows
    assert all(o["fill"].startswith(drawing_colour(0)[:-6]) for o in region_objects(Region.from_weights(weights), HALF,
                                                                                       (600, 400)))
    (box,) = region_objects(Region(box=(60, 40, 180, 120)), HALF, (600, 400))
    assert box["stroke"] == drawing_colour(STROKE_OPACITY) and box["strokeWidth"] > 0  # outlined like a rectangle


def test_resetting_the_canvas_drops_the_linked_region():
    seed = Region(box=(60, 40, 180, 120))
    assert drawing_to_region(drawing(), HALF, (600, 400), 7, seed=seed) is None
    stroke = path([(160, 150), (290, 150)], 10)
    weights = np.zeros((2, 2), dtype=np.float32)
    weights[0, 0], weights[1, 1] = 1.0, 1.0
    redrawn = drawing_to_region(drawing(stroke), HALF, (600, 400), 2, seed=Region.from_weights(weights))
    assert redrawn == drawing_to_region(drawing(stroke), HALF, (600, 400), 2)  # only what was drawn after the reset
