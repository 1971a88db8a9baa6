"""Sharded search in threads equals the scan of one single-file cache, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.data import write_cache
from vfs.similarity import kernel
from vfs.similarity.exact import Query, TorchBackend, get_backend, search
from vfs.similarity.sharded import ShardedBackend


@pytest.fixture
def features() -> np.ndarray:
    rng = np.random.default_rng(7)
    feats = np.maximum(rng.standard_normal((90, 12, 6, 6)), 0).astype(np.float16)
    feats[40:52] = feats[3]  # twelve exact duplicates of image 3: ties at the top
    feats[60] = 0  # an all-zero image
    feats[70:75, :, 2:4, 2:4] = feats[3, :, 0:2, 0:2]  # ties in a window away from the top-left
    return feats


def regions(grid: int) -> dict[str, np.ndarray]:
    one = np.zeros((grid, grid), np.float32)
    one[0, 0] = 1
    block = np.zeros((grid, grid), np.float32)
    block[0:2, 0:2] = [[1, 0.5], [0.25, 1]]
    return {"one cell": one, "2x2 soft": block, "full grid": np.ones((grid, grid), np.float32)}


@pytest.mark.parametrize("inner", ["torch-cpu", pytest.param("conv", marks=pytest.mark.torch)])
def test_sharded_search_equals_single_file_search(tmp_path, features, inner):
    if inner == "torch-cpu" and kernel.load() is None:
        pytest.skip("the PyTorch fallback's matrix products round duplicates by chunk (docs/scale-out.md)")
    single = write_cache(tmp_path / "single", features, shard_rows=len(features))
    many = write_cache(tmp_path / "many", features, shard_rows=7)
    assert len(single.shards) == 1 and len(many.shards) == 13
    inner_backend = TorchBackend("cpu", strategy="conv") if inner == "conv" else get_backend(inner)
    sharded = ShardedBackend(inner_backend, threads=3)
    for name, mask in regions(6).items():
        query = Query(features[3].astype(np.float32), mask)
        for exclude in ([3, 41, 89], None):
            expected = search(single, query, top_k=25, exclude=exclude, backend=inner_backend)
            got = search(many, query, top_k=25, exclude=exclude, backend=sharded)
            assert got.matches == expected.matches, name  # indices, windows, boxes and scores
            np.testing.assert_array_equal(got.scores, expected.scores)
            np.testing.assert_array_equal(got.windows, expected.windows)
        if name == "one cell":  # ties broken by dataset order, across shard boundaries
            assert [m.index for m in got.matches][:18] == [3, *range(40, 52), *range(70, 75)]
    assert sharded.name == f"sharded-{inner_backend.name}"


def test_sharded_backend_is_registered_and_matches_window_scores(tmp_path, features):
    cache = write_cache(tmp_path / "c", features, shard_rows=11)
    backend = get_backend("sharded")
    query = Query(features[5].astype(np.float32), regions(6)["2x2 soft"])
    best, flat = backend.best_windows(cache, query)
    norms = np.einsum("ncij,ncij->nij", *(2 * [features.astype(np.float32)]))
    heat = backend.window_scores(features, norms, query).reshape(len(features), -1)
    np.testing.assert_allclose(best, heat.max(axis=1), atol=1e-6)
    np.testing.assert_array_equal(flat, heat.argmax(axis=1))
