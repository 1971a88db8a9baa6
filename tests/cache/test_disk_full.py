"""A real full disk: a small tmpfs filled up while an index update writes to it.

Needs root (to mount the tmpfs); skipped elsewhere. The simulated case (fsync raising ENOSPC)
is in test_indexing.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.data import package_photo
from vfs.cache.feature_cache import FeatureCache
from vfs.cache.indexing import build_index
from vfs.errors import CacheError

LAYER, GRID = "blocks.6", 7  # 320×7×7 float16: about 31 kB per image


@pytest.fixture
def small_disk(tmp_path: Path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A file that takes all but about ``leave_bytes`` of the disk's free space."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_bytes))
    return filler


def test_a_full_disk_stops_the_update_with_a_clear_error_and_keeps_the_old_cache(small_disk, lite0, photo_dir):
    first = build_index(photo_dir, lite0, LAYER, GRID, small_disk / "cache", batch_size=4)
    before = FeatureCache.open(first.cache_dir, verify=True)
    assert len(before) == 9
    files_before = {p.name: p.read_bytes() for p in first.cache_dir.iterdir() if p.is_file()}
    for name in ("flower.jpg", "hubble_deep_field.jpg", "ihc.png"):
        shutil.copy(package_photo(name), photo_dir / name)

    filler = fill(small_disk, leave_bytes=16 * 1024)  # room for the lock and manifest, not for new features
    with pytest.raises(CacheError, match="Disk full"):
        build_index(photo_dir, lite0, LAYER, GRID, small_disk / "cache", batch_size=4)
    assert {p.name: p.read_bytes() for p in first.cache_dir.iterdir() if p.is_file()} == files_before
    assert len(FeatureCache.open(first.cache_dir, verify=True)) == 9

    filler.unlink()  # space again: the same command completes the update
    resumed = build_index(photo_dir, lite0, LAYER, GRID, small_disk / "cache", batch_size=4)
    assert resumed.indexed == 3 and len(FeatureCache.open(resumed.cache_dir, verify=True)) == 12
