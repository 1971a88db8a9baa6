"""FeatureSearch.index: the extraction engine by name (with its options) or as an object."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from vfs.cache.feature_cache import FeatureCache
from vfs.cache.indexing import build_index
from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch
from vfs.features import extraction
from vfs.features.extraction import LocalEngine

LAYER, GRID = "blocks.4", 4
COMMON = dict(batch_size=4, shard_images=4)


def shard_bytes(summary) -> list[bytes]:
    return [open(file, "rb").read() for file in summary.cache_files]


def test_index_takes_an_engine_by_name_with_options_or_as_an_object(tmp_path, lite0, photo_dir, monkeypatch):
    reference = build_index(photo_dir, lite0, LAYER, GRID, tmp_path / "reference", workers=1, **COMMON)
    made = []

    def recording_engine(workers: int, **options) -> LocalEngine:
        made.append((workers, options))
        return LocalEngine(workers)

    monkeypatch.setitem(extraction.ENGINES._table, "recording", recording_engine)
    by_name = FeatureSearch(photo_dir, model=lite0, layer=LAYER, grid=GRID, cache_dir=tmp_path / "by-name")
    summary = by_name.index(workers=3, engine="recording", flavour="plain", **COMMON)
    assert made == [(3, {"flavour": "plain"})]
    assert summary.indexed == reference.indexed == 9 and shard_bytes(summary) == shard_bytes(reference)
    assert len(by_name.cache) == 9  # the cache reopens after indexing

    as_object = FeatureSearch(photo_dir, model=lite0, layer=LAYER, grid=GRID, cache_dir=tmp_path / "object")
    assert shard_bytes(as_object.index(engine=LocalEngine(workers=2), **COMMON)) == shard_bytes(reference)

    with pytest.raises(VfsError, match="Unknown indexing engine 'spark'"):
        as_object.index(engine="spark")
    with pytest.raises(TypeError, match="engine given by name"):
        as_object.index(engine=LocalEngine(), address="ray://head:10001")


@pytest.mark.slow
def test_index_on_ray_through_the_api(tmp_path, lite0, photo_dir):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    try:
        fs = FeatureSearch(photo_dir, model=lite0, layer=LAYER, grid=GRID, cache_dir=tmp_path / "ray")
        summary = fs.index(workers=1, engine="ray", cpus_per_worker=1, decode_threads=1, **COMMON)
    finally:
        ray.shutdown()
    reference = build_index(photo_dir, lite0, LAYER, GRID, tmp_path / "local", **COMMON)
    assert summary.indexed == 9 and not summary.cancelled
    manifests = [json.loads((s.cache_dir / "manifest.json").read_text())["shards"] for s in (summary, reference)]
    assert [[(s["file"], s["rows"]) for s in m] for m in manifests] == [[("shard-00000.arrow", 4), ("shard-00001.arrow", 4),
                                                                        ("shard-00002.arrow", 1)]] * 2
    got, expected = FeatureCache.open(summary.cache_dir), FeatureCache.open(reference.cache_dir)
    assert got.paths == expected.paths and np.array_equal(got.image_sizes, expected.image_sizes)
    for a, b in zip(got.shards, expected.shards, strict=True):  # torch on another thread count: float16 rounding
        a32, b32 = a.features.astype(np.float32), b.features.astype(np.float32)
        step = np.spacing(np.maximum(np.abs(a32), np.abs(b32)).astype(np.float16)).astype(np.float32)
        assert np.all(np.abs(a32 - b32) <= step + 4e-6 * np.abs(b32).max())


@pytest.mark.torch  # indexing runs the model
def test_a_symlinked_dataset_file_is_found_as_the_query(tmp_path, photo_dir):
    """A dataset of links (to photos elsewhere) excludes the query by the link's own path."""
    linked = tmp_path / "linked"
    (linked / "animals").mkdir(parents=True)
    for photo in sorted(photo_dir.rglob("*.png"))[:4]:
        (linked / "animals" / photo.name).symlink_to(photo)
    fs = FeatureSearch(linked, layer="blocks.6", grid=3, cache_dir=tmp_path / "cache")
    fs.index()
    query = sorted((linked / "animals").iterdir())[0]
    result = fs.search(query, box=(0, 0, 100, 100), top_k=4, exclude_query=True)
    assert f"animals/{query.name}" not in [m.path for m in result.matches] and len(result.matches) == 3


@pytest.mark.torch  # indexing runs the model
def test_a_pyramid_level_opens_before_the_model_is_loaded(tmp_path, photo_dir):
    """A FeatureSearch that read its model's saved card has not loaded the model; its first scale_level loads it
    (under the lock that loading takes too) instead of waiting for itself."""
    FeatureSearch(photo_dir, layer="blocks.6", grid=3, cache_dir=tmp_path / "cache").index()  # saves the card
    fresh = FeatureSearch(photo_dir, layer="blocks.6", grid=3, cache_dir=tmp_path / "cache")
    assert fresh._model is None
    opened = []
    worker = threading.Thread(target=lambda: opened.append(fresh.scale_level(0.5)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "scale_level deadlocked on the model lock"
    assert opened[0].grid == 6
