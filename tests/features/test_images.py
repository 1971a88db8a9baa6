"""Decoding every kind of image a messy folder holds; bad files are reported, never fatal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.data import package_photo
from vfs.errors import DatasetError, ImageError
from vfs.features.images import load_image, scan_images


def make_messy_folder(root: Path) -> dict[str, str]:
    """Good and bad files; returns {relative path: expected outcome ('ok' or an error fragment)}."""
    root.mkdir(parents=True)
    photo = Image.open(package_photo("chelsea.png")).convert("RGB")
    expected = {}

    def save(name: str, image: Image.Image, outcome: str = "ok", **kwargs) -> None:
        image.save(root / name, **kwargs)
        expected[name] = outcome

    save("rgb.jpg", photo)
    save("gray.png", photo.convert("L"))
    save("cmyk.jpg", photo.convert("CMYK"))
    save("palette_alpha.png", photo.convert("P"), transparency=0)
    save("rgba.webp", photo.convert("RGBA"))
    save("photo.bmp", photo)
    save("photo.tiff", photo)
    save("tiny.png", Image.new("RGB", (1, 1), (200, 10, 10)))
    sixteen = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    save("sixteen.png", Image.fromarray(sixteen))
    frames = [Image.new("RGB", (40, 30), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    expected["animated.gif"] = "ok"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    photo.crop((0, 0, 300, 100)).save(root / "rotated.jpg", exif=exif)
    expected["rotated.jpg"] = "ok"

    data = (root / "rgb.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    expected["truncated.jpg"] = "cannot decode"
    (root / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "not a recognised image"
    (root / "text.jpg").write_text("this is not an image")
    expected["text.jpg"] = "not a recognised image"
    Image.new("1", (20000, 20000)).save(root / "bomb.png")  # 400 Mpx that compresses to little
    expected["bomb.png"] = "exceeds the limit"
    return expected


def test_every_format_decodes_or_fails_with_a_reason(tmp_path):
    expected = make_messy_folder(tmp_path / "messy")
    for name, outcome in expected.items():
        path = tmp_path / "messy" / name
        if outcome == "ok":
            image = load_image(path)
            assert image.mode == "RGB" and min(image.size) >= 1, name
        else:
            with pytest.raises(ImageError, match=outcome):
                load_image(path)


def test_conversions_keep_the_content(tmp_path):
    expected = make_messy_folder(tmp_path / "m")
    assert expected
    rotated = load_image(tmp_path / "m" / "rotated.jpg")
    assert rotated.size == (100, 300)  # EXIF orientation applied
    sixteen = np.asarray(load_image(tmp_path / "m" / "sixteen.png"))
    gray = np.asarray(load_image(tmp_path / "m" / "gray.png"))
    assert np.abs(sixteen.astype(int) - gray.astype(int)).max() <= 1  # scaled, not clipped to white
    gif = np.asarray(load_image(tmp_path / "m" / "animated.gif"))
    assert gif[0, 0, 0] > 200 and gif[0, 0, 2] < 50  # the first (red) frame
    transparent = np.asarray(load_image(tmp_path / "m" / "palette_alpha.png"))
    assert transparent.shape[2] == 3


def test_scan_is_recursive_sorted_and_labelled(tmp_path):
    root = tmp_path / "data"
    for rel in ("b/x.png", "a/y.JPG", "a/deep/z.png", "top.png", ".hidden/h.png", "a/.h.png", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package_photo("coffee.png"), root / rel)
    entries, skipped = scan_images(root)
    assert [e.path for e in entries] == ["a/deep/z.png", "a/y.JPG", "b/x.png", "top.png"]
    assert [e.label for e in entries] == ["deep", "a", "b", None]
    assert not skipped


def test_symlink_loops_and_unreadable_folders_are_reported(tmp_path):
    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    shutil.copy(package_photo("coffee.png"), root / "real" / "c.png")
    os.symlink(root, root / "real" / "loop")
    locked = root / "locked"
    locked.mkdir()
    shutil.copy(package_photo("coffee.png"), locked / "secret.png")
    locked.chmod(0)
    try:
        entries, skipped = scan_images(root)
    finally:
        locked.chmod(0o755)
    assert [e.path for e in entries if "secret" not in e.path][0] == "real/c.png"
    reasons = {s.path: s.reason for s in skipped}
    assert "symlink loop" in reasons["real/loop"]
    if os.geteuid() != 0:  # root reads everything regardless of permissions
        assert "cannot read" in reasons["locked"]


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_images(tmp_path / "nope")
    from vfs.cache.indexing import build_index

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        build_index(tmp_path / "empty", model=None, layer=None)  # fails before the model is touched


def _rgba16_png(path, width: int, height: int) -> None:
    """A 16-bit RGBA PNG (PIL cannot write one), of compressible rows: small on disk, large decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(range(256)) * (width * 8 // 256) + bytes(width * 8 % 256)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


PEAK_PROBE = """import resource, sys
from vfs.features.images import load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(sys.argv[1], max_pixels=int(sys.argv[2]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(image.mode, image.size[0], image.size[1], (after - before) * 1024)
"""


def test_decoding_a_16_bit_rgba_png_near_the_pixel_limit_keeps_memory_bounded(tmp_path):
    """Peak memory (ru_maxrss of a fresh process: PIL allocates in C, out of tracemalloc's sight) of decoding a
    16-bit RGBA PNG just under the pixel limit stays within two decoded copies of 4 bytes per pixel."""
    import subprocess
    import sys

    width, height, limit = 3000, 2600, 8_000_000
    _rgba16_png(tmp_path / "deep.png", width, height)
    run = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(tmp_path / "deep.png"), str(limit)],
                         capture_output=True, text=True, check=True, timeout=120)
    mode, shown_width, shown_height, peak = run.stdout.split()
    assert (mode, int(shown_width), int(shown_height)) == ("RGB", width, height)
    decoded = width * height * 4  # PIL holds RGBA and RGB in four bytes a pixel
    assert int(peak) < 2.5 * decoded, f"decoding took {int(peak) / 1e6:.0f} MB more, {decoded / 1e6:.0f} MB decoded"


def test_a_byte_budget_refuses_before_decoding_and_a_draft_decodes_a_large_jpeg_smaller(tmp_path):
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(tmp_path / "big.jpg", quality=90)
    with pytest.raises(ImageError, match="bytes, more than the limit"):
        load_image(tmp_path / "big.jpg", max_bytes=1600 * 1200 * 4 - 1)
    assert load_image(tmp_path / "big.jpg").size == (1600, 1200)
    drafted = load_image(tmp_path / "big.jpg", draft_side=300)
    assert drafted.size == (400, 300) and drafted.mode == "RGB"  # 1/4 scale: the smallest covering 300 a side
