"""Arrow caches: schema, zero-copy reads, incremental updates, crash safety and corruption."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from tests.support.data import package_photo
from vfs.cache.feature_cache import FeatureCache, ShardStore
from vfs.cache.indexing import build_index
from vfs.errors import CacheError

LAYER, GRID = "blocks.4", 4  # 112×14×14 pooled to 4×4: fast and still spatial


def index(photo_dir: Path, cache_dir: Path, model, batch_size: int = 4, **kwargs):
    return build_index(photo_dir, model, LAYER, GRID, cache_dir, batch_size=batch_size, **kwargs)


def snapshot(cache_path: Path) -> dict[str, np.ndarray]:
    cache = FeatureCache.open(cache_path, verify=True)
    return {p: cache.features(i).copy() for i, p in enumerate(cache.paths)}


def test_schema_is_documented_arrow_readable_by_anyone(tmp_path, lite0, photo_dir):
    summary = index(photo_dir, tmp_path / "cache", lite0)
    assert summary.images == 9 and summary.indexed == 9 and not summary.skipped
    (shard,) = summary.cache_files
    with pa.memory_map(shard) as source:
        table = ipc.open_file(source).read_all()
    assert table.column_names == ["path", "label", "width", "height", "file_size", "mtime_ns", "features", "cell_norms2"]
    features_type = table.schema.field("features").type
    assert features_type.extension_name == "arrow.fixed_shape_tensor"
    assert features_type.value_type == pa.float16() and features_type.shape == [112, GRID, GRID]
    meta = json.loads(table.schema.metadata[b"vfs"])
    assert meta["model"] == "tf_efficientnet_lite0" and meta["layer"] == LAYER and meta["grid"] == GRID
    assert meta["preprocessing"]["resize"] == "full-image" and meta["fingerprint"] == lite0.fingerprint
    rows = dict(zip(table.column("path").to_pylist(), table.column("label").to_pylist()))
    assert rows["animals/chelsea.png"] == "animals" and rows["china.jpg"] is None
    sizes = dict(zip(table.column("path").to_pylist(), table.column("width").to_pylist()))
    assert sizes["animals/chelsea.png"] == 451
    first = table.column("features").chunk(0).to_numpy_ndarray()[0]
    np.testing.assert_allclose(table.column("cell_norms2").chunk(0).to_numpy_ndarray()[0],
                               (first.astype(np.float32) ** 2).sum(axis=0), rtol=1e-5)


def test_cache_is_read_memory_mapped_without_copies(tmp_path, lite0, photo_dir):
    summary = index(photo_dir, tmp_path / "cache", lite0)
    before = pa.total_allocated_bytes()
    cache = FeatureCache.open(summary.cache_dir)
    features = cache.shards[0].features
    assert pa.total_allocated_bytes() - before < 4096  # nothing the size of the features was allocated
    assert not features.flags.writeable and not features.flags.owndata
    table = cache.shards[0]._keepalive[1]
    values = table.column("features").chunk(0).storage.values
    assert features.ctypes.data == values.buffers()[1].address  # the array is the file's own bytes


def test_incremental_updates_touch_only_what_changed(tmp_path, lite0, photo_dir):
    cache_dir = tmp_path / "cache"
    first = index(photo_dir, cache_dir, lite0)
    before = snapshot(first.cache_dir)

    shutil.copy(package_photo("flower.jpg"), photo_dir / "objects" / "flower.jpg")  # new
    shutil.copy(package_photo("camera.png"), photo_dir / "textures" / "brick.png")  # changed
    (photo_dir / "animals" / "astronaut.png").unlink()  # removed
    second = index(photo_dir, cache_dir, lite0)
    assert (second.indexed, second.unchanged, second.removed) == (2, 7, 2)  # brick: old row removed, new one added
    after = snapshot(second.cache_dir)
    assert "animals/astronaut.png" not in after and "objects/flower.jpg" in after
    assert not np.array_equal(after["textures/brick.png"], before["textures/brick.png"])
    for path in set(before) - {"textures/brick.png", "animals/astronaut.png"}:
        np.testing.assert_array_equal(after[path], before[path])

    third = index(photo_dir, cache_dir, lite0)
    assert (third.indexed, third.unchanged, third.removed) == (0, 9, 0)


def test_bad_files_are_skipped_reported_and_not_retried(tmp_path, lite0, photo_dir):
    (photo_dir / "objects" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photo_dir / "objects" / "empty.png").write_bytes(b"")
    summary = index(photo_dir, tmp_path / "cache", lite0)
    reasons = {s.path: s.reason for s in summary.skipped}
    assert set(reasons) == {"objects/broken.jpg", "objects/empty.png"}
    assert all("not a recognised image" in r or "cannot decode" in r for r in reasons.values())
    assert summary.images == 9
    again = index(photo_dir, tmp_path / "cache", lite0)
    assert again.indexed == 0 and again.unchanged == 11 and len(again.skipped) == 2


@pytest.mark.parametrize("damage", ["bit flip", "truncation", "manifest"])
def test_corrupt_caches_are_detected_reported_and_rebuilt(tmp_path, lite0, photo_dir, damage):
    clean = index(photo_dir, tmp_path / "clean", lite0, shard_images=4)
    damaged_dir = tmp_path / "damaged"
    first = index(photo_dir, damaged_dir, lite0, shard_images=4)
    shard = Path(first.cache_files[1])
    if damage == "bit flip":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0x10
        shard.write_bytes(bytes(data))
        with pytest.raises(CacheError, match="checksum"):
            FeatureCache.open(first.cache_dir, verify=True)
    elif damage == "truncation":
        shard.write_bytes(shard.read_bytes()[:-100])
        with pytest.raises(CacheError, match="truncated"):
            FeatureCache.open(first.cache_dir)
    else:
        (first.cache_dir / "manifest.json").write_text("{not json")
    repaired = index(photo_dir, damaged_dir, lite0, shard_images=4)
    assert repaired.repaired, "the damage must be reported"
    assert repaired.indexed == (9 if damage == "manifest" else 4)
    assert snapshot(repaired.cache_dir).keys() == snapshot(clean.cache_dir).keys()
    for path, features in snapshot(clean.cache_dir).items():
        np.testing.assert_array_equal(snapshot(repaired.cache_dir)[path], features)


def _shards_done(cache_root: Path) -> int:
    manifests = list(cache_root.glob("*/*/manifest.json"))
    if not manifests:
        return 0
    try:
        return len(json.loads(manifests[0].read_text())["shards"])
    except (ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_mid_run_resumes_to_the_same_cache(tmp_path, photo_dir):
    for name in ("flower.jpg", "coins.png", "camera.png", "retina.jpg", "hubble_deep_field.jpg"):
        shutil.copy(package_photo(name), photo_dir / "objects" / name)
    command = [sys.executable, "-m", "vfs.cli", "index", str(photo_dir), "--layer", LAYER, "--grid", str(GRID),
               "--batch-size", "2", "--shard-images", "2", "--json", "--device", "cpu"]
    subprocess.run(command + ["--cache-dir", str(tmp_path / "reference")], check=True, capture_output=True)

    killed = tmp_path / "killed"
    for kill_after in (1, 3, 5):  # shards completed before each kill -9
        process = subprocess.Popen(command + ["--cache-dir", str(killed)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _shards_done(killed) < kill_after and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert _shards_done(killed) < 7, "the runs were meant to be killed before finishing"
    finish = subprocess.run(command + ["--cache-dir", str(killed)], check=True, capture_output=True, text=True)
    assert json.loads(finish.stdout)["images"] == 14

    (reference,) = (tmp_path / "reference").glob("*/*/")
    (resumed,) = killed.glob("*/*/")
    assert (reference / "manifest.json").read_text() == (resumed / "manifest.json").read_text()
    for shard in sorted(reference.glob("shard-*.arrow")):
        assert shard.read_bytes() == (resumed / shard.name).read_bytes(), shard.name


def test_two_indexers_on_one_cache_take_turns(tmp_path, lite0, photo_dir):
    results, errors = [], []

    def run() -> None:
        try:
            results.append(index(photo_dir, tmp_path / "cache", lite0, shard_images=3))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r.indexed for r in results) == [0, 9]  # the second waited, then found everything done
    assert len(FeatureCache.open(results[0].cache_dir, verify=True)) == 9


def test_disk_full_is_a_clear_error_and_keeps_the_old_cache(tmp_path, lite0, photo_dir, monkeypatch):
    first = index(photo_dir, tmp_path / "cache", lite0)
    shutil.copy(package_photo("flower.jpg"), photo_dir / "flower.jpg")
    import errno

    import vfs.cache.feature_cache

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vfs.cache.feature_cache.os, "fsync", no_space)
    with pytest.raises(CacheError, match="Disk full"):
        index(photo_dir, tmp_path / "cache", lite0)
    monkeypatch.undo()
    assert len(FeatureCache.open(first.cache_dir, verify=True)) == 9
    assert not [p for p in first.cache_dir.iterdir() if ".tmp-" in p.name]


def test_cancelling_keeps_completed_shards(tmp_path, lite0, photo_dir):
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.done)
        if p.done >= 4:
            cancel.set()

    summary = index(photo_dir, tmp_path / "cache", lite0, shard_images=4, progress=progress, cancel=cancel)
    assert summary.cancelled and summary.images == 4
    resumed = index(photo_dir, tmp_path / "cache", lite0, shard_images=4)
    assert resumed.indexed == 5 and resumed.images == 9
    store = ShardStore.open(summary.cache_dir, FeatureCache.open(summary.cache_dir).spec)
    assert not store.problems


def test_cancelling_mid_shard_keeps_the_finished_images(tmp_path, lite0, photo_dir):
    cancel = threading.Event()

    def progress(p):
        if p.done >= 4:
            cancel.set()

    summary = index(photo_dir, tmp_path / "cache", lite0, batch_size=2, progress=progress, cancel=cancel)
    assert summary.cancelled and summary.indexed == summary.images == 4  # the shard was not full: kept anyway
    resumed = index(photo_dir, tmp_path / "cache", lite0, batch_size=2)
    assert resumed.indexed == 5 and resumed.images == 9
    whole = index(photo_dir, tmp_path / "uninterrupted", lite0, batch_size=2)
    cancelled, uninterrupted = FeatureCache.open(resumed.cache_dir), FeatureCache.open(whole.cache_dir)
    assert sorted(cancelled.paths) == sorted(uninterrupted.paths)
    for path in uninterrupted.paths:
        np.testing.assert_array_equal(cancelled.features(cancelled.index_of(path)),
                                      uninterrupted.features(uninterrupted.index_of(path)))
