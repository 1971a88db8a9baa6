"""Caches on object storage: built and searched in a local mirror, pushed and pulled whole.

The remote is a ``file://`` URI, which goes through the same ``pyarrow.fs`` calls as s3:// or gs://.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vfs.cache.feature_cache import MANIFEST, FeatureCache
from vfs.cache.mirror import pull_cache, push_cache
from vfs.errors import CacheError
from vfs.feature_search import FeatureSearch

LAYER, GRID = "blocks.4", 4
BOX = (40, 30, 300, 250)


def searcher(photo_dir, store, mirror_root, lite0, **kwargs):
    return FeatureSearch(photo_dir, model=lite0, layer=LAYER, grid=GRID, cache_dir=store, mirror_root=mirror_root,
                         **kwargs)


def test_a_cache_directory_on_storage_is_built_pushed_and_searched_elsewhere(tmp_path, photo_dir, lite0):
    store = (tmp_path / "bucket" / "caches").as_uri()
    builder = searcher(photo_dir, store, tmp_path / "mirror-a", lite0)
    summary = builder.index(batch_size=4)
    assert summary.indexed == 9
    remote = tmp_path / "bucket" / "caches" / builder.cache_path.relative_to(builder.cache_dir)
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in builder.cache_path.iterdir()
                                                              if not p.name.startswith("."))
    expected = builder.search(photo_dir / "animals" / "chelsea.png", box=BOX, top_k=5)

    reader = searcher(photo_dir, store, tmp_path / "mirror-b", lite0)  # another machine: an empty mirror
    got = reader.search(photo_dir / "animals" / "chelsea.png", box=BOX, top_k=5)
    assert got.matches == expected.matches
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert len(FeatureCache.open(reader.cache_path, verify=True)) == 9


def test_pushing_again_copies_only_changed_shards_and_pulling_again_only_what_changed(tmp_path, photo_dir, lite0):
    store = (tmp_path / "bucket").as_uri()
    builder = searcher(photo_dir, store, tmp_path / "mirror-a", lite0)
    builder.index(batch_size=4, shard_images=4)  # 3 shards
    relative = builder.cache_path.relative_to(builder.cache_dir).as_posix()
    assert push_cache(builder.cache_path, store, relative) == 0  # nothing changed since the index pushed
    reader_cache = tmp_path / "mirror-b" / "c"
    assert pull_cache(store, relative, reader_cache) == 3
    assert pull_cache(store, relative, reader_cache) == 0

    # the last shard (textures/gravel.png alone) changes, the first two do not
    (photo_dir / "textures" / "gravel.png").write_bytes((photo_dir / "textures" / "brick.png").read_bytes())
    builder.index(batch_size=4, shard_images=4)
    assert pull_cache(store, relative, reader_cache) == 1
    assert FeatureCache.open(reader_cache, verify=True).paths == builder.cache.paths


def test_an_interrupted_push_leaves_no_cache_on_storage_and_the_next_push_completes(tmp_path, photo_dir, lite0,
                                                                                     monkeypatch):
    store = (tmp_path / "bucket").as_uri()
    builder = searcher(photo_dir, store, tmp_path / "mirror-a", lite0)
    builder.index(batch_size=4, shard_images=4)
    relative = builder.cache_path.relative_to(builder.cache_dir).as_posix()
    (photo_dir / "extra.png").write_bytes((photo_dir / "animals" / "chelsea.png").read_bytes())
    import vfs.cache.mirror

    class ConnectionLost:
        """The storage, losing the connection at the second file written."""

        def __init__(self, filesystem):
            self.filesystem, self.writes = filesystem, 0

        def __getattr__(self, name):
            return getattr(self.filesystem, name)

        def open_output_stream(self, path):
            self.writes += 1
            if self.writes == 2:
                raise OSError("connection reset")
            return self.filesystem.open_output_stream(path)

    remote = vfs.cache.mirror._remote
    monkeypatch.setattr(vfs.cache.mirror, "_remote", lambda uri, relative: (ConnectionLost(remote(uri, relative)[0]),
                                                                       remote(uri, relative)[1]))
    with pytest.raises(OSError, match="connection reset"):
        builder.index(batch_size=4, shard_images=4)
    monkeypatch.undo()
    remote = tmp_path / "bucket" / relative
    assert not (remote / MANIFEST).exists()  # readers see no cache, not a mixed one
    assert pull_cache(store, relative, tmp_path / "mirror-b" / "c") is None

    push_cache(builder.cache_path, store, relative)
    shards = len(json.loads((builder.cache_path / MANIFEST).read_text())["shards"])
    assert pull_cache(store, relative, tmp_path / "mirror-b" / "c") == shards
    assert len(FeatureCache.open(tmp_path / "mirror-b" / "c", verify=True)) == 10


def test_a_damaged_shard_on_storage_is_refused_and_the_local_copy_is_not_replaced(tmp_path, photo_dir, lite0):
    store = (tmp_path / "bucket").as_uri()
    builder = searcher(photo_dir, store, tmp_path / "mirror-a", lite0)
    builder.index(batch_size=4)
    relative = builder.cache_path.relative_to(builder.cache_dir).as_posix()
    remote = tmp_path / "bucket" / relative
    shard = next(p for p in remote.iterdir() if p.suffix == ".arrow")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    local = tmp_path / "mirror-b" / "c"
    with pytest.raises(CacheError, match="damaged"):
        pull_cache(store, relative, local)
    assert not (local / shard.name).exists() and not (local / MANIFEST).exists()

    (remote / MANIFEST).write_text("{not json")
    with pytest.raises(CacheError, match="unreadable"):
        pull_cache(store, relative, local)


@pytest.mark.slow  # end to end, in a subprocess or over the whole demo
def test_the_command_line_indexes_into_and_searches_a_cache_directory_uri(tmp_path, photo_dir):
    store = (tmp_path / "bucket").as_uri()
    env_home = {"HOME": str(tmp_path / "home")}  # the mirror lives under ~/.cache/vfs/mirrors
    command = [str(Path(sys.executable).parent / "vfs"), "search", str(photo_dir), "--query", str(photo_dir / "china.jpg"),
               "--box", "10,10,200,200", "--layer", LAYER, "--grid", str(GRID), "--cache-dir", store, "--json"]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env_home}, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["results"][0]["path"] == "china.jpg"
    assert any((tmp_path / "bucket").rglob(MANIFEST))
