"""Query regions: boxes stay exact, grid weights are quantised and move between grids by area."""

from __future__ import annotations

import numpy as np
import pytest

from vfs.errors import MaskError
from vfs.features.geometry import box_to_grid, mask_to_grid
from vfs.similarity.region import Region, quantise_weights


def test_box_covers_the_drawn_pixels_and_forgives_rounding_noise():
    assert Region.from_box((10.2, 5.0, 99.5, 60.9)).box == (10, 5, 100, 61)
    assert Region.from_box((63.99999999, 0, 256.00000001, 128)).box == (64, 0, 256, 128)


def test_box_weights_on_any_grid_are_the_box_coverage():
    region = Region(box=(64, 64, 256, 256))
    np.testing.assert_array_equal(region.grid_weights((448, 448), 7), box_to_grid((64, 64, 256, 256), (448, 448), 7))
    assert region.search_arguments(7) == {"box": (64, 64, 256, 256)}


def test_grid_mask_is_exact_on_its_own_grid_and_area_averaged_on_others():
    weights = np.zeros((4, 4), np.float32)
    weights[1:3, 1:3] = 1.0
    region = Region.from_weights(weights)
    np.testing.assert_array_equal(region.grid_weights((400, 300), 4), weights)
    np.testing.assert_array_equal(region.search_arguments(4)["mask"], weights)
    coarse = region.grid_weights((400, 300), 2)
    np.testing.assert_allclose(coarse, np.full((2, 2), 0.25))
    np.testing.assert_allclose(region.grid_weights((400, 300), 8), mask_to_grid(weights, 8))


def test_quantisation_rounds_to_byte_levels():
    values = quantise_weights(np.array([[0.0, 0.001, 0.5, 1.0, 1.7]]))
    np.testing.assert_array_equal(values, np.array([[0, 0, 128, 255, 255]], np.float32) / 255)


def test_equal_regions_have_equal_tokens_and_compare_equal():
    a = Region.from_weights(np.eye(3))
    assert a == Region.from_weights(np.eye(3) * 0.9999) and hash(a) == hash(Region.from_weights(np.eye(3)))
    assert a != Region.from_weights(np.eye(3)[::-1]) and a != Region(box=(0, 0, 1, 1))


@pytest.mark.parametrize("make", [
    lambda: Region(),
    lambda: Region(box=(0, 0, 1, 1), grid_mask=np.ones((2, 2))),
    lambda: Region(box=(5, 0, 5, 10)),
    lambda: Region(grid_mask=np.zeros((3, 3))),
    lambda: Region(grid_mask=np.ones((2, 3))),
])
def test_malformed_regions_are_refused(make):
    with pytest.raises(MaskError):
        make()
