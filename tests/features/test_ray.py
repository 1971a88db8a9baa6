"""Ray, end to end on a local instance this module starts: the ray engine and ray-sharded search."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from tests.support.data import package_photo, write_cache
from vfs.cache.feature_cache import FeatureCache
from vfs.cache.indexing import build_index
from vfs.cli import main
from vfs.similarity.exact import Query, search

ray = pytest.importorskip("ray")

LAYER, GRID = "blocks.4", 4
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


def assert_within_float16_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to one float16 step plus the float32 noise of running torch on another number of
    threads (up to ~2e-6 of the largest feature): rounding x and x + e differs by at most e + a step."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    step = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float32)
    tolerance = step + 4e-6 * np.abs(a).max()
    assert np.all(np.abs(a - b) <= tolerance), float((np.abs(a - b) - tolerance).max())
    assert np.mean(a == b) > 0.98  # nearly all values are bit-identical


def test_ray_engine_finishes_a_local_build_into_the_same_cache(tmp_path, lite0, photo_dir, capsys, local_ray):
    for name in ("flower.jpg", "coins.png"):
        shutil.copy(package_photo(name), photo_dir / "objects" / name)
    (photo_dir / "objects" / "broken.jpg").write_bytes(b"nope")
    uri = photo_dir.as_uri()  # workers read the images through pyarrow.fs
    common = dict(batch_size=2, shard_images=3)
    reference = build_index(photo_dir, lite0, LAYER, GRID, tmp_path / "reference", **common)

    cancel = threading.Event()  # the local engine writes the first shard, then stops
    local = build_index(uri, lite0, LAYER, GRID, tmp_path / "mixed", cancel=cancel,
                        progress=lambda p: cancel.set() if p.done >= 3 else None, **common)
    assert local.cancelled and local.images == 3
    code = main(["index", uri, "--layer", LAYER, "--grid", str(GRID), "--cache-dir", str(tmp_path / "mixed"),
                 "--batch-size", "2", "--shard-images", "3", "--engine", "ray", "--workers", "2", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["indexed"] == 8 and summary["unchanged"] == 3 and summary["images"] == 11

    expected = json.loads((reference.cache_dir / "manifest.json").read_text())["shards"]
    got = json.loads((local.cache_dir / "manifest.json").read_text())["shards"]
    def layout(shards):
        return [(s["file"], s["rows"], s["skipped"]) for s in shards]

    assert layout(got) == layout(expected)
    a, b = FeatureCache.open(reference.cache_dir, verify=True), FeatureCache.open(local.cache_dir, verify=True)
    assert a.paths == b.paths and a.labels == b.labels and np.array_equal(a.image_sizes, b.image_sizes)
    for shard_a, shard_b in zip(a.shards, b.shards, strict=True):
        assert shard_a.offset == shard_b.offset
        assert_within_float16_rounding(shard_a.features, shard_b.features)
    query = Query(a.features(4).astype(np.float32), np.ones((GRID, GRID), np.float32))
    assert [m.index for m in search(a, query, top_k=5).matches] == [m.index for m in search(b, query, top_k=5).matches]


def test_ray_sharded_search_equals_single_file_search(tmp_path, local_ray):
    from vfs.similarity.sharded import RayShardedBackend

    rng = np.random.default_rng(11)
    features = np.maximum(rng.standard_normal((70, 10, 5, 5)), 0).astype(np.float16)
    features[30:36] = features[2]  # ties across shards
    single = write_cache(tmp_path / "single", features, shard_rows=70)
    many = write_cache(tmp_path / "many", features, shard_rows=9)
    backend = RayShardedBackend(actors_per_node=2)
    try:
        mask = np.zeros((5, 5), np.float32)
        mask[1:4, 0:2] = 1
        query = Query(features[2].astype(np.float32), mask)
        for exclude in ([2, 31], None):
            expected = search(single, query, top_k=12, exclude=exclude, backend="torch-cpu")
            got = search(many, query, top_k=12, exclude=exclude, backend=backend)
            assert got.matches == expected.matches
            np.testing.assert_array_equal(got.scores, expected.scores)
        assert [m.index for m in got.matches][:7] == [2, *range(30, 36)]  # ties by dataset order
        assert sorted(backend.rows_per_actor) == [34, 36]  # 7 shards of 9 rows and one of 7, balanced
    finally:
        backend.close()
