"""Search against a float64 brute-force oracle that loops over every window."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.data import write_cache
from tests.support.oracle import brute_force
from vfs.errors import MaskError
from vfs.similarity.exact import Query, TorchBackend, get_backend, list_backends, search


def masks(grid: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    one = np.zeros((grid, grid), np.float32)
    one[grid // 2, 1] = 1
    out["one cell"] = one
    block = np.zeros((grid, grid), np.float32)
    block[1:4, 2:5] = 1
    out["3x3"] = block
    out["full grid"] = np.ones((grid, grid), np.float32)
    stroke = np.zeros((grid, grid), np.float32)
    for i in range(grid - 1):
        stroke[i, min(grid - 1, i // 2 + 1)] = 1
        stroke[i + 1, min(grid - 1, i // 2 + 1)] = 0.4
    out["irregular stroke"] = stroke
    border = np.zeros((grid, grid), np.float32)
    border[-2:, -3:] = [[0.2, 1, 1], [1, 0.7, 0]]
    out["border, soft"] = border
    out["soft random"] = np.where(rng.random((grid, grid)) < 0.4, rng.random((grid, grid)), 0).astype(np.float32)
    return out


@pytest.mark.parametrize("grid,channels", [(7, 24), (5, 9), (10, 6)])
@pytest.mark.parametrize("strategy", [None, *(pytest.param(s, marks=pytest.mark.torch) for s in ("dense", "cells", "conv"))])
def test_search_equals_brute_force_on_random_features(tmp_path, grid, channels, strategy):
    rng = np.random.default_rng(grid * 100 + channels)
    # ReLU-like features with some all-zero cells and one all-zero image, as real layers have
    features = np.maximum(rng.standard_normal((23, channels, grid, grid)), 0).astype(np.float16)
    features[3] = 0
    cache = write_cache(tmp_path / "c", features, shard_rows=5)
    backend = TorchBackend("cpu", strategy=strategy)
    for name, grid_mask in masks(grid, rng).items():
        if strategy == "dense" and not ((grid_mask.max(axis=0) > 0).all() and (grid_mask.max(axis=1) > 0).all()):
            continue  # dense is only for masks whose box is the whole grid
        query = Query(rng.random((channels, grid, grid)).astype(np.float32), grid_mask)
        result = search(cache, query, top_k=len(features), backend=backend)
        expected_scores, expected_windows = brute_force(features, query.features, grid_mask)
        np.testing.assert_allclose(result.scores, expected_scores, atol=1e-4, err_msg=name)
        order = [m.index for m in result.matches]
        assert sorted(order) == list(range(len(features))), name
        for better, worse in zip(order, order[1:]):  # ranked best first, up to float noise
            assert expected_scores[better] >= expected_scores[worse] - 1e-4, name
        for match in result.matches:
            if abs(expected_scores[match.index]) > 1e-6:
                assert match.window[:2] == tuple(expected_windows[match.index]), name


def test_real_features_match_brute_force(tmp_path, lite0, photo_dir):
    from vfs.feature_search import FeatureSearch

    fs = FeatureSearch(photo_dir, model=lite0, layer="blocks.4", grid=9, cache_dir=tmp_path / "cache")
    fs.index()
    features = np.stack([fs.cache.features(i) for i in range(len(fs.cache))])
    query_features, size = fs.query_features(photo_dir / "animals" / "chelsea.png")
    grid_mask = fs.grid_mask(size, box=(100, 40, 300, 200))
    result = search(fs.cache, Query(query_features, grid_mask), top_k=len(fs.cache))
    expected, _ = brute_force(features, query_features, grid_mask)
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    assert result.matches[0].path == "animals/chelsea.png"


def test_an_image_queried_by_itself_scores_one_at_its_own_window(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.random((12, 16, 7, 7)).astype(np.float16)
    cache = write_cache(tmp_path / "c", features)
    grid_mask = np.zeros((7, 7), np.float32)
    grid_mask[2:5, 3:6] = 1
    result = search(cache, Query(features[8].astype(np.float32), grid_mask), top_k=3)
    top = result.matches[0]
    assert top.index == 8 and top.score == pytest.approx(1.0, abs=1e-6) and top.window == (2, 3, 3, 3)


def test_ties_are_broken_by_dataset_order_then_top_left_window(tmp_path):
    features = np.ones((6, 4, 5, 5), np.float16)  # every window of every image is identical
    cache = write_cache(tmp_path / "c", features, shard_rows=4)
    grid_mask = np.zeros((5, 5), np.float32)
    grid_mask[1, 1] = 1
    result = search(cache, Query(np.ones((4, 5, 5), np.float32), grid_mask), top_k=4)
    assert [m.index for m in result.matches] == [0, 1, 2, 3]
    assert all(m.window == (0, 0, 1, 1) for m in result.matches)


def test_results_map_windows_back_to_original_pixels(tmp_path):
    features = np.zeros((2, 3, 4, 4), np.float16)
    features[1, 0, 2, 3] = 1  # the bottom-right-ish cell of image 1
    cache = write_cache(tmp_path / "c", features, sizes=(400, 200))
    grid_mask = np.zeros((4, 4), np.float32)
    grid_mask[0, 0] = 1
    query = np.zeros((3, 4, 4), np.float32)
    query[0, 0, 0] = 1
    match = search(cache, Query(query, grid_mask), top_k=1).matches[0]
    assert match.index == 1 and match.window == (2, 3, 1, 1)
    assert tuple(match.box) == (300.0, 100.0, 400.0, 150.0)


def test_exclusion_and_top_k_bounds(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.random((5, 4, 3, 3)).astype(np.float16)
    cache = write_cache(tmp_path / "c", features)
    query = Query(features[2].astype(np.float32), np.ones((3, 3), np.float32))
    result = search(cache, query, top_k=10, exclude=[2])
    assert len(result.matches) == 4 and 2 not in [m.index for m in result.matches]
    assert result.scores[2] == -np.inf and np.isfinite(np.delete(result.scores, 2)).all()


def test_empty_and_degenerate_regions_are_clear_errors(tmp_path):
    with pytest.raises(MaskError, match="empty"):
        Query(np.ones((2, 3, 3), np.float32), np.zeros((3, 3), np.float32)).bounds
    zero_query = Query(np.zeros((2, 3, 3), np.float32), np.ones((3, 3), np.float32))
    cache = write_cache(tmp_path / "c", np.ones((2, 2, 3, 3), np.float16))
    with pytest.raises(MaskError, match="all zero"):
        search(cache, zero_query)
    with pytest.raises(MaskError, match="do not match"):
        search(cache, Query(np.ones((5, 3, 3), np.float32), np.ones((3, 3), np.float32)))


def test_scores_stay_within_cosine_bounds(tmp_path):
    rng = np.random.default_rng(2)
    features = (rng.standard_normal((40, 8, 6, 6)) * 100).astype(np.float16)
    cache = write_cache(tmp_path / "c", features, shard_rows=40)
    query = Query(-features[5].astype(np.float32), (rng.random((6, 6)) > 0.5).astype(np.float32))
    result = search(cache, query, top_k=40)
    assert np.all(result.scores <= 1.0) and np.all(result.scores >= -1.0)


def test_backends_are_registered_and_interchangeable(tmp_path):
    assert {"torch-cpu", "torch-cuda"} <= set(list_backends())
    assert get_backend("auto").name in ("torch-cpu", "torch-cuda")
    rng = np.random.default_rng(3)
    features = rng.random((9, 5, 4, 4)).astype(np.float16)
    cache = write_cache(tmp_path / "c", features)
    query = Query(rng.random((5, 4, 4)).astype(np.float32), np.eye(4, dtype=np.float32))
    heatmaps = get_backend("torch-cpu").window_scores(features, np.einsum("ncij,ncij->nij", *(2 * [features.astype(np.float32)])), query)
    best = search(cache, query, top_k=9, backend="torch-cpu").scores
    np.testing.assert_allclose(heatmaps.reshape(9, -1).max(axis=1), best, atol=1e-6)
