"""The query image: a dataset image or an upload, and how a link names either."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vfs.dashboard.deployment import BYTES_PER_MB, UploadLimits
from vfs.dashboard.links import SharedSearch, ShareError
from vfs.dashboard.selection import display_path
from vfs.dashboard.uploads import UploadError, UploadStore, upload_id
from vfs.errors import ImageError
from vfs.features.images import load_image

MAX_UPLOAD_MB = UploadLimits.max_mb


MAX_UPLOAD_PIXELS = UploadLimits.max_pixels


@dataclass(frozen=True)
class QueryImage:
    """The image being searched from: a dataset image (shareable in a link) or an upload."""

    name: str
    dataset_path: str | None = None  # POSIX, relative to the dataset folder
    upload: bytes | None = None
    max_pixels: int = field(default=MAX_UPLOAD_PIXELS, compare=False)  # the upload limit it was checked against
    upload_id: str | None = None  # set once the upload is kept on the server, where links can name it

    @classmethod
    def from_dataset(cls, relative: str) -> QueryImage:
        return cls(name=relative, dataset_path=relative)

    @property
    def key(self) -> str:
        """Identifies the picture (for widget keys and memoised searches)."""
        if self.dataset_path is not None:
            return "data:" + self.dataset_path
        return "upload:" + (self.upload_id or upload_id(self.upload or b""))

    @property
    def shareable(self) -> bool:
        """Whether a link can name this picture."""
        return self.dataset_path is not None or self.upload_id is not None

    def source(self, root: Path) -> Path | Image.Image:
        """What :meth:`FeatureSearch.search` takes: a dataset path (features come from the cache)."""
        if self.dataset_path is not None:
            return root / self.dataset_path
        return load_image(self.upload or b"", max_pixels=self.max_pixels)

    def picture(self, root: Path) -> Image.Image:
        return load_image(self.source(root))


def load_upload(name: str, data: bytes, max_mb: int = MAX_UPLOAD_MB, max_pixels: int = MAX_UPLOAD_PIXELS) -> QueryImage:
    """Check an uploaded file and make it the query; :class:`ImageError` says what is wrong."""
    if len(data) > max_mb * BYTES_PER_MB:
        raise ImageError(f"{name} is {len(data) / BYTES_PER_MB:.1f} MB; uploads are limited to {max_mb} MB.")
    try:
        load_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise ImageError(f"{name}: {str(exc).removeprefix('image: ')}") from None
    return QueryImage(name=name, upload=data, max_pixels=max_pixels)


def keep_upload(query: QueryImage, store: UploadStore) -> tuple[QueryImage, str | None]:
    """The upload kept in ``store`` so links can name it; unchanged, with the reason, when it cannot be."""
    if query.upload is None or query.upload_id is not None:
        return query, None
    try:
        return replace(query, upload_id=store.put(query.upload)), None
    except UploadError as exc:
        return query, str(exc)


def filter_paths(paths: Sequence[str], text: str) -> list[str]:
    """Paths containing every word of ``text`` (case-insensitive)."""
    words = text.lower().split()
    return [p for p in paths if all(word in p.lower() for word in words)]


def page_of(items: Sequence[str], page: int, per_page: int) -> tuple[list[str], int]:
    """The items on 1-based ``page`` (clamped to the valid range) and the number of pages."""
    pages = max(1, -(-len(items) // per_page))
    page = min(max(page, 1), pages)
    return list(items[(page - 1) * per_page: page * per_page]), pages


def link_query(shared: SharedSearch, dataset_paths: Sequence[str], root: Path, uploads: UploadStore | None = None,
               limits: UploadLimits = UploadLimits()) -> tuple[QueryImage | None, list[ShareError]]:
    if shared.upload is not None:
        return _linked_upload(shared.upload, uploads, limits)
    if shared.query is None:
        return None, []
    if shared.query not in set(dataset_paths):
        return None, [ShareError(f"The link's query image {shared.query!r} is not in {display_path(root)}; "
                                 "it may have been renamed or removed.")]
    try:
        load_image(root / shared.query)
    except ImageError as exc:
        return None, [ShareError(f"The link's query image cannot be used: {exc}.")]
    return QueryImage.from_dataset(shared.query), []


def _linked_upload(name: str, uploads: UploadStore | None,
                   limits: UploadLimits) -> tuple[QueryImage | None, list[ShareError]]:
    if uploads is None:
        return None, [ShareError("The link names an uploaded image, but this deployment does not keep uploads.")]
    try:
        query = load_upload("uploaded image", uploads.get(name), limits.max_mb, limits.max_pixels)
    except (UploadError, ImageError) as exc:
        return None, [ShareError(f"The link's uploaded image cannot be used: {exc}")]
    return replace(query, upload_id=name), []


def unreadable_picture(message: str, side: int) -> Image.Image:
    """A grey square that says why an image cannot be shown, to stand in its place."""
    picture = Image.new("RGB", (side, side), (96, 96, 96))
    size = max(10, side // 24)
    characters = max(12, int(side * 0.85 / (size * 0.55)))  # a character is about 0.55 font sizes wide
    ImageDraw.Draw(picture).multiline_text((side // 16, side // 16), textwrap.fill(message, characters, max_lines=12),
                                           fill=(255, 255, 255), font=ImageFont.load_default(size=size))
    return picture
