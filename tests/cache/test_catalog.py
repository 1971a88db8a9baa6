"""Listing and deleting feature caches."""

from __future__ import annotations

import os
import shutil

import pytest

from vfs.cache.catalog import delete_cache, format_bytes, list_caches, manifest_token, read_cache
from vfs.errors import CacheError


@pytest.fixture
def cache_dir(constructed_case, tmp_path):
    copy = tmp_path / "cache"
    shutil.copytree(constructed_case.cache_dir, copy)
    return copy


def test_lists_a_cache_with_what_it_holds(constructed_case, cache_dir):
    (info,) = list_caches(cache_dir, known_datasets=[constructed_case.data])
    assert (info.model, info.layer, info.grid) == ("tf_efficientnet_lite0", "blocks.6", 7)
    assert info.dataset == str(constructed_case.data)
    assert info.images == constructed_case.images and info.skipped == 0
    assert info.bytes == sum(f.stat().st_size for f in info.path.iterdir() if f.is_file())
    assert info.bytes > constructed_case.images * 320 * 49 * 2  # float16 features dominate
    assert "blocks.6 · grid 7×7" in info.describe() and "11 images" in info.describe()


def test_unknown_dataset_is_shown_by_its_cache_folder_name(cache_dir):
    (info,) = list_caches(cache_dir)
    assert info.dataset == info.path.parent.name and info.dataset.startswith("data-")


def test_unreadable_folders_are_not_caches(cache_dir):
    (info,) = list_caches(cache_dir)
    broken = cache_dir / "other-12345678" / "model--layer--g7--0123"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    assert [c.path for c in list_caches(cache_dir)] == [info.path]
    assert read_cache(broken) is None and read_cache(cache_dir / "missing") is None


def test_manifest_token_changes_when_the_cache_is_rewritten(cache_dir):
    (info,) = list_caches(cache_dir)
    before = manifest_token(info.path)
    manifest = info.path / "manifest.json"
    os.utime(manifest, ns=(before + 10**9, before + 10**9))
    assert manifest_token(info.path) == before + 10**9
    assert manifest_token(cache_dir / "nothing") is None


def test_delete_removes_the_cache_and_its_empty_dataset_folder(cache_dir):
    (info,) = list_caches(cache_dir)
    delete_cache(cache_dir, info.path)
    assert not info.path.exists() and not info.path.parent.exists()
    assert list_caches(cache_dir) == []


def test_delete_refuses_anything_but_a_cache_in_the_cache_folder(cache_dir, tmp_path):
    (info,) = list_caches(cache_dir)
    with pytest.raises(CacheError, match="nothing was deleted"):
        delete_cache(cache_dir, info.path.parent)
    outside = tmp_path / "elsewhere" / "a" / "b"
    shutil.copytree(info.path, outside)
    with pytest.raises(CacheError):
        delete_cache(cache_dir, outside)
    assert info.path.exists() and outside.exists()


@pytest.mark.parametrize(("count", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"),
                                             (5 * 1024**2, "5.0 MB"), (3 * 1024**4, "3.0 TB")])
def test_format_bytes(count, text):
    assert format_bytes(count) == text
