"""Finding and decoding dataset images, robustly: a bad file is reported, never fatal."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vfs.errors import DatasetError, ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
#: Larger images are refused before decoding (decompression bombs); override per call.
DEFAULT_MAX_PIXELS = 120_000_000

# vfs checks the pixel count itself and reports it; PIL's own guard would raise mid-run.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageEntry:
    """A dataset image: its path relative to the dataset root, and what identifies its version."""

    path: str  # POSIX, relative to the root
    size: int
    mtime_ns: int
    label: str | None  # the parent folder's name; None for images directly in the root


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def scan_images(root: str | Path) -> tuple[list[ImageEntry], list[Skipped]]:
    """Every image below ``root`` (recursive, symlinks followed once), sorted by path.

    Hidden files and folders are ignored. Folders that cannot be read, and symlink loops, are
    returned as skipped with their reason.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist or is not a folder.")
    entries: list[ImageEntry] = []
    skipped: list[Skipped] = []
    visited: set[tuple[int, int]] = set()

    def walk(folder: Path, rel: str) -> None:
        try:
            stat = folder.stat()
        except OSError as exc:
            skipped.append(Skipped(rel or ".", f"cannot read folder: {exc.strerror or exc}"))
            return
        if (stat.st_dev, stat.st_ino) in visited:
            skipped.append(Skipped(rel, "symlink loop (folder already visited)"))
            return
        visited.add((stat.st_dev, stat.st_ino))
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(rel or ".", f"cannot read folder: {exc.strerror or exc}"))
            return
        for child in children:
            if child.name.startswith("."):
                continue
            child_rel = f"{rel}/{child.name}" if rel else child.name
            try:
                if child.is_dir():
                    walk(Path(child.path), child_rel)
                    continue
                if Path(child.name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                st = child.stat()
            except OSError as exc:
                skipped.append(Skipped(child_rel, f"cannot read: {exc.strerror or exc}"))
                continue
            label = rel.rsplit("/", 1)[-1] if rel else None
            entries.append(ImageEntry(child_rel, st.st_size, st.st_mtime_ns, label))

    walk(root, "")
    entries.sort(key=lambda e: e.path)
    return entries, skipped


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # convert("RGB") would clip 16-bit values at 255; scale the full range instead
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode != "F" and array.max() > 255 else max(float(array.max()), 1.0)
        if image.mode == "F":
            array = array - min(float(array.min()), 0.0)
            top = max(float(array.max()), 1e-12)
        array = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # pasted onto white through its own alpha: beside the decoded image, only the RGB result is allocated
        # (alpha_composite needed three more full-size copies: 350 MB more for a 40-megapixel upload)
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba)
        return rgb
    return image.convert("RGB")


#: Bytes per pixel that PIL's decoder allocates for a mode (RGB is stored in four bytes, like RGBA).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_DEFAULT_MODE_BYTES = 4


def decoded_bytes(image: Image.Image) -> int:
    """The bytes ``image.load()`` allocates for its pixels (width × height × bytes per pixel of its mode)."""
    width, height = image.size
    return width * height * _MODE_BYTES.get(image.mode, _DEFAULT_MODE_BYTES)


def load_image(source: str | Path | bytes | Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = None, draft_side: int | None = None) -> Image.Image:
    """Decode an image to RGB with EXIF orientation applied (first frame of animations).

    ``max_bytes`` bounds the decoded pixels' memory (default: four bytes for each of ``max_pixels``), checked
    before anything is decoded. ``draft_side`` lets a JPEG decode at a reduced scale (DCT scaling) that still
    covers ``draft_side`` pixels on each side: for callers that only resize it down (the returned size is then
    smaller than the file's). Raises :class:`ImageError` with a one-line reason for anything that cannot be used.
    """
    name = "image" if isinstance(source, (bytes, Image.Image)) else str(source)
    try:
        if isinstance(source, Image.Image):
            image = source
        else:
            # a path as str: Pillow 10 resolves a Path first, and pathlib on Python 3.10 reports a symlink
            # loop as RuntimeError, not as the OSError (ELOOP) that opening the file reports everywhere
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source))
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageError(f"{name}: empty image ({width}×{height})")
        if width * height > max_pixels:
            raise ImageError(f"{name}: {width}×{height} = {width * height:,} pixels exceeds the limit of "
                             f"{max_pixels:,} (possible decompression bomb)")
        if draft_side is not None and image.format == "JPEG" and min(width, height) >= 2 * draft_side:
            image.draft("RGB", (draft_side, draft_side))  # the smallest 1/2, 1/4, 1/8 scale still covering it
        budget = max_pixels * _DEFAULT_MODE_BYTES if max_bytes is None else max_bytes
        if not isinstance(source, Image.Image) and decoded_bytes(image) > budget:
            raise ImageError(f"{name}: decoding {width}×{height} ({image.mode}) needs {decoded_bytes(image):,} "
                             f"bytes, more than the limit of {budget:,}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image format") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types for broken files
        raise ImageError(f"{name}: cannot decode ({type(exc).__name__}: {exc})") from None
