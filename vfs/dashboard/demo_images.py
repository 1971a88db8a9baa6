"""The demo image set: real photographs that ship inside installed packages.

scikit-image (``skimage/data``) and scikit-learn (``sklearn/datasets/images``) install a few
dozen sample images. The photographs among them are copied into ``data/demo/<package>/`` so
that the dashboard works on a fresh, offline machine; the package name becomes the label.
Drawings, test patterns, masks, animations and tiny images are left out.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vfs.errors import DatasetError
from vfs.features.images import IMAGE_EXTENSIONS

DEMO_DIR = Path("data/demo")
#: Shorter sides below this are icons or masks, not photographs.
MIN_PHOTO_SIDE = 160
#: Fewer distinct grey levels than this means a drawing or a test pattern.
MIN_GREY_LEVELS = 64

_PACKAGE_FOLDERS = (("skimage", "data"), ("sklearn", "datasets/images"))


@dataclass(frozen=True)
class PhotoSource:
    label: str  # the package's import name; the demo sub-folder
    folder: Path


def photo_sources() -> list[PhotoSource]:
    """The sample-image folders of the installed packages (without importing them)."""
    sources = []
    for package, relative in _PACKAGE_FOLDERS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent / relative
        if folder.is_dir():
            sources.append(PhotoSource(package, folder))
    return sources


def is_photo(path: Path) -> bool:
    """A single-frame, opaque image of a useful size with a continuous range of tones."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        with Image.open(path) as image:
            if min(image.size) < MIN_PHOTO_SIDE or getattr(image, "n_frames", 1) > 1:
                return False
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                return False  # cut-outs and logos
            grey = np.asarray(image.convert("L"))
    except (OSError, ValueError):
        return False
    return len(np.unique(grey)) >= MIN_GREY_LEVELS


def _copy_atomically(source: Path, target: Path) -> None:
    # another session may gather at the same time: never expose a half-written file
    partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def gather_demo_images(target: str | Path = DEMO_DIR, sources: list[PhotoSource] | None = None) -> list[Path]:
    """Copy the packages' photographs into ``target/<package>/``; files already there are kept.

    Returns every demo photo under ``target``, sorted. Raises :class:`DatasetError` when no
    package provides any photograph.
    """
    target = Path(target).expanduser()
    gathered: list[Path] = []
    for source in photo_sources() if sources is None else sources:
        for path in sorted(source.folder.iterdir()):
            copy = target / source.label / path.name
            if copy.is_file() and copy.stat().st_size == path.stat().st_size:
                gathered.append(copy)
                continue
            if not path.is_file() or not is_photo(path):
                continue
            copy.parent.mkdir(parents=True, exist_ok=True)
            _copy_atomically(path, copy)
            gathered.append(copy)
    if not gathered:
        raise DatasetError("No demo photographs found: install scikit-image or scikit-learn, "
                           "or choose a dataset folder in the sidebar.")
    return sorted(gathered)
