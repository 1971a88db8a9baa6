"""Scale-tolerant search: pyramid levels, queries placed on other grids, the best over scales, real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.support.data import package_photo, write_cache
from tests.support.oracle import brute_force
from vfs.errors import MaskError
from vfs.feature_search import FeatureSearch
from vfs.features.geometry import window_to_box
from vfs.similarity.exact import Query
from vfs.similarity.scales import MULTI_SCALES, parse_scales, placed_query, scale_level, search_scales


def test_a_level_keeps_the_cell_size():
    assert scale_level(0.5, (224, 224), 7) == scale_level(0.5, (224, 224), 7)
    half = scale_level(0.5, (224, 224), 7)
    assert half.input_size == (448, 448) and half.grid == 14  # 32 input pixels a cell, as at scale 1
    double = scale_level(2.0, (240, 320), 14)
    assert double.input_size == (120, 160) and double.grid == 7
    assert parse_scales("2, 0.5,1,1") == (0.5, 1.0, 2.0) and parse_scales("multi") == MULTI_SCALES
    for bad in ("", "a,b", "0.01"):
        with pytest.raises(MaskError):
            scale_level(0.01, (224, 224), 7) if bad == "0.01" else parse_scales(bad)


def test_a_placed_query_is_the_same_kernel():
    rng = np.random.default_rng(0)
    mask = np.zeros((7, 7), np.float32)
    mask[2:4, 3:6] = rng.uniform(0.2, 1, (2, 3))
    query = Query(rng.random((5, 7, 7)).astype(np.float32), mask)
    placed = placed_query(query, 4)
    assert placed.window_shape == query.window_shape and np.allclose(placed.kernel, query.kernel)
    assert placed_query(query, 2) is None  # three cells wide: no room on a 2×2 grid


def test_search_scales_is_the_best_level_per_image(tmp_path):
    rng = np.random.default_rng(1)
    channels, n = 6, 9
    base = np.maximum(rng.standard_normal((n, channels, 7, 7)), 0).astype(np.float16)
    fine = np.maximum(rng.standard_normal((n, channels, 14, 14)), 0).astype(np.float16)
    base_cache = write_cache(tmp_path / "base", base, shard_rows=4, sizes=(300, 200))
    order = rng.permutation(n)  # the level lists the same images in another order: rows are matched by path
    fine_cache = write_cache(tmp_path / "fine", fine[order], shard_rows=4, sizes=(300, 200),
                             paths=[base_cache.paths[i] for i in order])
    mask = np.zeros((7, 7), np.float32)
    mask[1:3, 2:5] = 1
    query = Query(rng.random((channels, 7, 7)).astype(np.float32), mask)
    levels = [(scale_level(1.0, (224, 224), 7), base_cache), (scale_level(0.5, (224, 224), 7), fine_cache)]
    result = search_scales(base_cache, levels, query, top_k=n)

    base_scores, base_windows = brute_force(base, query.features, mask)
    fine_query = placed_query(query, 14)
    fine_scores, fine_windows = brute_force(fine, fine_query.features, fine_query.grid_mask)
    expected = np.maximum(base_scores, fine_scores)  # fine[i] is base image i's level, wherever its row is
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    for match in result.matches:
        i = match.index
        if base_scores[i] >= fine_scores[i]:
            assert match.scale == 1.0
            assert match.box == window_to_box(*base_windows[i], 2, 3, (300, 200), 7)
        else:
            assert match.scale == 0.5
            assert match.box == window_to_box(*fine_windows[i], 2, 3, (300, 200), 14)
        assert match.to_dict()["scale"] == match.scale


@pytest.mark.slow
def test_a_half_size_copy_is_found_at_scale_half(tmp_path):
    """A photo, and the same photo shrunk to half its size in a corner of a plain canvas: at scale 1 the
    copy's window cannot hold the object; at scale 0.5 it is found, in the corner, in the copy's pixels."""
    data = tmp_path / "data"
    data.mkdir()
    photo = Image.open(package_photo("chelsea.png")).convert("RGB").resize((448, 448))
    photo.save(data / "original.png")
    canvas = Image.new("RGB", (448, 448), (128, 128, 128))
    canvas.paste(photo.resize((224, 224)), (0, 224))  # bottom-left quadrant
    canvas.save(data / "copy.png")
    for name in ("coffee.png", "rocket.jpg", "brick.png"):
        Image.open(package_photo(name)).convert("RGB").save(data / f"{name}.png")
    fs = FeatureSearch(data, layer="blocks.4", cache_dir=tmp_path / "cache")
    fs.index()
    fs.scale_level(0.5).index()
    box = (112, 112, 336, 336)  # the cat's head, the middle of the original
    plain = fs.search(data / "original.png", box=box, top_k=5, exclude_query=True)
    scaled = fs.search(data / "original.png", box=box, top_k=5, exclude_query=True, scales=(1.0, 0.5))
    copy = next(m for m in scaled.matches if m.path == "copy.png")
    assert scaled.matches[0].path == "copy.png" and copy.scale == 0.5
    assert copy.score > next(m.score for m in plain.matches if m.path == "copy.png") + 0.1
    x0, y0, x1, y1 = copy.box
    assert abs(x0 - 56) <= 16 and abs(y0 - 280) <= 16 and abs(x1 - 168) <= 16 and abs(y1 - 392) <= 16
