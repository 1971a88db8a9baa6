"""Where a dataset's images are read from: a local folder, or any ``pyarrow.fs`` URI.

A local folder is scanned with :func:`vfs.features.images.scan_images` and read from disk. A URI
(``s3://bucket/photos``, ``gs://bucket/photos``, ``hdfs://…``, ``file:///data/photos``) is
listed and read through the filesystem pyarrow resolves for it, so indexing workers on other
machines read the images themselves instead of receiving them from the driver. Both give the
same :class:`~vfs.features.images.ImageEntry` list for the same files: paths relative to the root in
POSIX form, sorted, hidden files and folders left out, the parent folder as label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs
from PIL import Image

from vfs.errors import DatasetError, ImageError
from vfs.features.images import IMAGE_EXTENSIONS, ImageEntry, Skipped, load_image, scan_images


def is_uri(data: str | Path) -> bool:
    return isinstance(data, str) and "://" in data


@dataclass(frozen=True)
class DatasetSource:
    """A dataset root: a local folder (``uri`` None) or a folder behind a ``pyarrow.fs`` URI.

    Picklable, so Ray workers receive it and open the files themselves.
    """

    root: str  # a local path, or the path inside ``filesystem``
    filesystem: pafs.FileSystem | None = None
    uri: str | None = None

    @classmethod
    def open(cls, data: str | Path) -> DatasetSource:
        if not is_uri(data):
            return cls(str(Path(data).expanduser()))
        uri = str(data).rstrip("/")
        try:
            filesystem, root = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise DatasetError(f"Cannot open dataset {uri}: {exc}") from None
        return cls(root.rstrip("/"), filesystem, uri)

    @property
    def location(self) -> str | Path:
        """What names the dataset in the cache folder: the local path, or the URI."""
        return self.uri if self.uri is not None else Path(self.root)

    def describe(self, relative: str) -> str:
        return f"{self.uri}/{relative}" if self.uri is not None else str(Path(self.root) / relative)

    def scan(self) -> tuple[list[ImageEntry], list[Skipped]]:
        """Every image below the root, sorted by path (see :func:`vfs.features.images.scan_images`)."""
        if self.filesystem is None:
            return scan_images(self.root)
        try:
            infos = self.filesystem.get_file_info(pafs.FileSelector(self.root, recursive=True))
        except FileNotFoundError:
            raise DatasetError(f"Dataset folder {self.uri} does not exist.") from None
        except OSError as exc:
            raise DatasetError(f"Cannot list dataset {self.uri}: {exc}") from None
        entries: list[ImageEntry] = []
        prefix = len(self.root) + 1
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            relative = PurePosixPath(info.path[prefix:])
            if any(part.startswith(".") for part in relative.parts) or relative.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            label = relative.parent.name if len(relative.parts) > 1 else None
            entries.append(ImageEntry(relative.as_posix(), int(info.size), int(info.mtime_ns or 0), label))
        entries.sort(key=lambda e: e.path)
        return entries, []

    def load(self, relative: str, max_pixels: int) -> Image.Image:
        """Decode one image (see :func:`vfs.features.images.load_image`); errors name the file."""
        if self.filesystem is None:
            return load_image(Path(self.root) / relative, max_pixels=max_pixels)
        name = self.describe(relative)
        try:
            with self.filesystem.open_input_file(f"{self.root}/{relative}") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise ImageError(f"{name}: file not found") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read ({exc})") from None
        try:
            return load_image(data, max_pixels=max_pixels)
        except ImageError as exc:
            raise ImageError(f"{name}: {str(exc).removeprefix('image: ')}") from None
