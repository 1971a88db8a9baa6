"""The demo set: real photographs gathered from installed packages, idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vfs.dashboard.demo_images import PhotoSource, gather_demo_images, is_photo, photo_sources
from vfs.errors import DatasetError
from vfs.features.images import scan_images


def test_both_packages_provide_photographs():
    labels = {source.label for source in photo_sources()}
    assert labels == {"skimage", "sklearn"}


def test_gathers_photographs_and_leaves_out_drawings_masks_and_animations(tmp_path):
    gathered = gather_demo_images(tmp_path / "demo")
    names = {path.relative_to(tmp_path / "demo").as_posix() for path in gathered}
    assert {"skimage/astronaut.png", "skimage/coffee.png", "skimage/chelsea.png", "sklearn/china.jpg",
            "sklearn/flower.jpg"} <= names
    for drawing in ("skimage/chessboard_RGB.png", "skimage/horse.png", "skimage/logo.png", "skimage/phantom.png",
                    "skimage/microaneurysms.png", "skimage/no_time_for_that_tiny.gif", "skimage/multipage.tif"):
        assert drawing not in names
    entries, skipped = scan_images(tmp_path / "demo")
    assert len(entries) == len(gathered) >= 15 and not skipped
    assert {entry.label for entry in entries} == {"skimage", "sklearn"}


def test_gathering_again_copies_nothing(tmp_path):
    first = gather_demo_images(tmp_path)
    stamps = {path: path.stat().st_mtime_ns for path in first}
    assert gather_demo_images(tmp_path) == first
    assert {path: path.stat().st_mtime_ns for path in first} == stamps


def test_a_damaged_copy_is_replaced(tmp_path):
    gather_demo_images(tmp_path)
    copy = tmp_path / "sklearn" / "china.jpg"
    copy.write_bytes(b"truncated")
    gather_demo_images(tmp_path)
    with Image.open(copy) as image:
        assert image.size == (640, 427)


def test_photo_test_rejects_small_flat_and_transparent_images(tmp_path):
    Image.new("RGB", (100, 300), (1, 2, 3)).save(tmp_path / "small.png")
    Image.new("L", (300, 300), 128).save(tmp_path / "flat.png")
    Image.effect_noise((300, 300), 60).convert("RGBA").save(tmp_path / "cutout.png")
    Image.effect_noise((300, 300), 60).save(tmp_path / "noise.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [is_photo(tmp_path / name) for name in ("small.png", "flat.png", "cutout.png", "noise.png", "notes.txt")] \
        == [False, False, False, True, False]


def test_no_packages_means_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="install scikit-image or scikit-learn"):
        gather_demo_images(tmp_path / "demo", sources=[PhotoSource("none", empty)])
    assert not (tmp_path / "demo").exists()


def test_sources_can_be_any_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.effect_noise((256, 200), 50).save(folder / "noise.png")
    gathered = gather_demo_images(tmp_path / "demo", sources=[PhotoSource("mine", folder)])
    assert gathered == [tmp_path / "demo" / "mine" / "noise.png"]
    assert not list(Path(tmp_path / "demo" / "mine").glob(".*"))  # no temporary files left behind
