"""Indexing engines and dataset sources, without Ray: the registry, pyarrow.fs URIs, clear errors,
the batch normalisation."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vfs.cache.indexing import build_index
from vfs.errors import VfsError
from vfs.features.extraction import LocalEngine, get_engine, list_engines
from vfs.features.images import scan_images
from vfs.features.sources import DatasetSource

LAYER, GRID = "blocks.4", 4


def test_engines_are_registered_by_name():
    assert {"local", "ray"} <= set(list_engines())
    engine = get_engine("local", workers=3)
    assert isinstance(engine, LocalEngine) and engine.workers == 3
    with pytest.raises(VfsError, match="Unknown indexing engine 'spark'; available: local, ray"):
        get_engine("spark")


@pytest.mark.torch  # the ray engine module runs the model
def test_missing_ray_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "vfs.features.ray_extraction", raising=False)
    with pytest.raises(VfsError, match=r"^The ray engine needs Ray: pip install 'vfs\[ray\]'$"):
        get_engine("ray", workers=1)


def test_uri_scan_lists_what_the_folder_scan_lists(photo_dir):
    (photo_dir / ".hidden").mkdir()
    (photo_dir / ".hidden" / "x.png").write_bytes(b"")
    (photo_dir / "objects" / "notes.txt").write_text("not an image")
    (photo_dir / "objects" / "broken.jpg").write_bytes(b"nope")
    by_uri, _ = DatasetSource.open(photo_dir.as_uri()).scan()
    by_folder, _ = scan_images(photo_dir)
    assert by_uri == by_folder and len(by_uri) == 10


def test_uri_dataset_gives_the_same_shards_as_its_folder(tmp_path, lite0, photo_dir):
    (photo_dir / "objects" / "broken.jpg").write_bytes(b"nope")
    kwargs = dict(batch_size=4, shard_images=4)
    by_folder = build_index(photo_dir, lite0, LAYER, GRID, tmp_path / "a", **kwargs)
    by_uri = build_index(photo_dir.as_uri(), lite0, LAYER, GRID, tmp_path / "b", **kwargs)
    assert by_uri.cache_dir.parent.name != by_folder.cache_dir.parent.name  # a URI names its own dataset folder
    reasons = [s.reason for s in by_uri.skipped]
    assert reasons == [s.reason for s in by_folder.skipped] == ["not a recognised image format"]
    assert (by_uri.cache_dir / "manifest.json").read_text() == (by_folder.cache_dir / "manifest.json").read_text()
    for a, b in zip(by_folder.cache_files, by_uri.cache_files, strict=True):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_missing_uri_dataset_is_a_dataset_error(tmp_path, lite0):
    with pytest.raises(VfsError, match="does not exist"):
        build_index((tmp_path / "nowhere").as_uri(), lite0, LAYER, GRID, tmp_path / "c")


@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                      ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_channels_last_batches_hold_the_values_caches_are_keyed_on(torch, mean, std):
    """The local engine normalises in place, without transposes, and stacks channels-last; the values
    must stay numpy's float32 ``(x / 255 - mean) / std`` of every byte value in every channel."""
    from PIL import Image

    from vfs.features.models import Preprocessing

    preprocessing = Preprocessing((40, 48), "bicubic", mean, std)
    rng = np.random.default_rng(5)
    every_value = np.resize(np.arange(256, dtype=np.uint8), (40, 48, 3))  # each value in each channel, many lanes
    pictures = [Image.fromarray(every_value), Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))]
    batch = preprocessing.batch([preprocessing.normalised(picture) for picture in pictures])
    assert batch.shape == (2, 3, 40, 48) and batch.is_contiguous(memory_format=torch.channels_last)
    for picture, got in zip(pictures, batch):
        pixels = np.asarray(picture)
        expected = (pixels.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        np.testing.assert_array_equal(got.numpy(), expected.transpose(2, 0, 1))
        single = preprocessing(picture)  # one image, as a query is: the same values, NCHW-contiguous
        assert single.is_contiguous() and torch.equal(single, got)
