import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vfs.errors import MaskError
from vfs.features.geometry import box_to_grid, grid_bounds, load_mask, mask_to_grid, window_to_box


def test_aligned_box_covers_whole_cells():
    grid = box_to_grid((100, 50, 300, 150), (400, 200), 4)
    expected = np.zeros((4, 4), np.float32)
    expected[1:3, 1:3] = 1
    np.testing.assert_array_equal(grid, expected)


def test_partial_cells_get_their_area_fraction():
    grid = box_to_grid((0, 0, 150, 100), (400, 400), 4)  # 1.5 cells wide, 1 tall
    np.testing.assert_allclose(grid[0, :2], [1.0, 0.5])
    assert grid[1:].sum() == 0 and grid[0, 2:].sum() == 0


def test_mask_and_box_agree_for_the_same_region():
    mask = np.zeros((90, 130), bool)
    mask[17:61, 33:101] = True
    np.testing.assert_allclose(mask_to_grid(mask, 7), box_to_grid((33, 17, 101, 61), (130, 90), 7), atol=1e-6)


def test_soft_masks_are_area_averaged():
    mask = np.full((10, 10), 0.25, np.float32)
    np.testing.assert_allclose(mask_to_grid(mask, 5), 0.25, atol=1e-6)


def test_window_maps_back_through_the_same_edges():
    assert window_to_box(1, 2, 3, 2, (700, 350), 7) == (200.0, 50.0, 400.0, 200.0)
    # and the box of a window covers exactly that window's cells
    box = window_to_box(2, 1, 2, 3, (333, 211), 9)
    grid = box_to_grid(box, (333, 211), 9)
    assert grid_bounds(grid) == (2, 1, 4, 4) and np.isclose(grid[2:4, 1:4], 1).all()


@settings(max_examples=200, deadline=None)
@given(width=st.integers(8, 2000), height=st.integers(8, 2000), grid=st.integers(1, 16),
       top=st.integers(0, 15), left=st.integers(0, 15), h=st.integers(1, 16), w=st.integers(1, 16))
def test_window_box_round_trip(width, height, grid, top, left, h, w):
    top, left = min(top, grid - 1), min(left, grid - 1)
    h, w = min(h, grid - top), min(w, grid - left)
    box = window_to_box(top, left, h, w, (width, height), grid)
    assert 0 <= box.x0 < box.x1 <= width + 1e-9 and 0 <= box.y0 < box.y1 <= height + 1e-9
    coverage = box_to_grid(box, (width, height), grid)
    assert grid_bounds(coverage) == (top, left, top + h, left + w)
    np.testing.assert_allclose(coverage[top:top + h, left:left + w], 1.0, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 12), st.randoms(use_true_random=False))
def test_mask_to_grid_preserves_mean_and_bounds(height, width, grid, rnd):
    mask = np.array([[rnd.random() for _ in range(width)] for _ in range(height)], np.float32)
    cells = mask_to_grid(mask, grid)
    assert cells.shape == (grid, grid) and cells.min() >= 0 and cells.max() <= 1
    assert cells.mean() == pytest.approx(float(mask.mean()), abs=1e-5)


def test_bad_regions_are_clear_errors(tmp_path):
    with pytest.raises(MaskError, match="empty"):
        box_to_grid((10, 10, 10, 20), (100, 100), 7)
    with pytest.raises(MaskError, match="outside"):
        box_to_grid((200, 10, 300, 20), (100, 100), 7)
    with pytest.raises(MaskError, match="empty"):
        grid_bounds(mask_to_grid(np.zeros((5, 5)), 3))
    with pytest.raises(MaskError, match=r"\[0, 1\]"):
        mask_to_grid(np.full((4, 4), 2.0), 2)
    with pytest.raises(MaskError, match="2-D"):
        mask_to_grid(np.zeros((4, 4, 3)), 2)
    Image.new("L", (20, 10)).save(tmp_path / "small.png")
    with pytest.raises(MaskError, match="20×10 but the query image is 40×20"):
        load_mask(tmp_path / "small.png", (40, 20))


def test_mask_png_white_or_alpha(tmp_path):
    gray = np.zeros((10, 20), np.uint8)
    gray[2:5, 3:9] = 255
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "gray.png", (20, 10)) > 0.5, gray > 0)
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha channel marks the region
    rgba[6:9, 1:4, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "alpha.png", (20, 10)) > 0.5, rgba[..., 3] > 0)
