"""What the dashboard does, apart from page layout: configuration, the current selection of
dataset, model, layer and grid, query images and uploads, searching and match heatmaps.

Nothing here imports Streamlit, so all of it is tested without a browser.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from vfs._progress import describe
from vfs.api import FeatureSearch
from vfs.cache import CacheSpec, cache_path, cell_norms2
from vfs.catalog import read_cache
from vfs.demo import DEMO_DIR
from vfs.deploy import Access, Deployment, UploadLimits, load_deployment
from vfs.errors import DatasetError, ImageError, VfsError
from vfs.images import load_image
from vfs.indexing import DEFAULT_CACHE_DIR, IndexSummary, Progress, build_index, cache_spec
from vfs.models import FeatureModel, LayerInfo
from vfs.region import Region
from vfs.search import SearchResult, get_backend
from vfs.share import SharedSearch, ShareError
from vfs.units import region_query
from vfs.uploads import UploadError, UploadStore, upload_id

MAX_UPLOAD_MB = UploadLimits.max_mb
MAX_UPLOAD_PIXELS = UploadLimits.max_pixels
UPLOADS_FOLDER = "uploads"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppConfig:
    data: Path | None  # None: the demo photos, or the deployment's default dataset
    cache_dir: Path
    read_only: bool  # never build or delete caches
    deployment: Deployment | None = None  # None: a local tool that opens any folder and any model

    @property
    def default_dataset(self) -> Path:
        if self.data is not None:
            return self.data
        return self.deployment.default_dataset if self.deployment is not None else DEMO_DIR

    @property
    def serves_demo(self) -> bool:
        """Whether data/demo is gathered from the installed packages when it is opened."""
        return self.deployment.demo if self.deployment is not None else self.data is None

    @property
    def uploads(self) -> UploadLimits:
        return self.deployment.uploads if self.deployment is not None else UploadLimits()

    @property
    def upload_store(self) -> UploadStore:
        """Where uploads are kept for links, next to the caches (read-only: opened, never added to)."""
        return UploadStore(self.cache_dir / UPLOADS_FOLDER, writable=not self.read_only)

    def resolve_dataset(self, text: str) -> Path:
        """The dataset folder ``text`` names; a deployment confines it to its roots."""
        return resolve_dataset(text) if self.deployment is None else self.deployment.datasets.resolve(text)

    def resolve_model(self, name: str) -> tuple[str, Path | None]:
        """The timm architecture a model picker's ``name`` stands for, and its weights file if it names one.

        A deployment refuses names it does not allow (:class:`vfs.deploy.ModelNotAllowed`).
        """
        return (name, None) if self.deployment is None else self.deployment.models.resolve(name)

    def access(self, user: Mapping[str, object]) -> Access:
        """Whether the visitor whose ``st.user`` is ``user`` sees the dashboard."""
        return Access.OPEN if self.deployment is None else self.deployment.sign_in.access(user)


def parse_app_args(argv: Sequence[str], environ: Mapping[str, str]) -> AppConfig:
    """``streamlit run app.py -- [--config FILE] [--data DIR] [--cache-dir DIR] [--read-only]``.

    Each option falls back to an environment variable (VFS_CONFIG, VFS_DATA, VFS_CACHE_DIR,
    VFS_READ_ONLY). A deployment file (see :mod:`vfs.deploy`) sets the defaults; the options
    override them but cannot widen it: ``--data`` must lie inside its roots and read-only stays on.
    Unknown arguments are ignored: under a test runner, argv belongs to the runner.
    """
    parser = argparse.ArgumentParser(prog="streamlit run app.py --", allow_abbrev=False, add_help=False)
    parser.add_argument("--config", default=environ.get("VFS_CONFIG") or None)
    parser.add_argument("--data", default=environ.get("VFS_DATA") or None)
    parser.add_argument("--cache-dir", default=environ.get("VFS_CACHE_DIR") or None)
    parser.add_argument("--read-only", action="store_true",
                        default=environ.get("VFS_READ_ONLY", "").strip().lower() in _TRUE)
    args, _ = parser.parse_known_args(list(argv))
    deployment = load_deployment(args.config) if args.config else None
    data = Path(args.data).expanduser() if args.data else None
    if deployment is not None and data is not None:
        data = deployment.datasets.resolve(data)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else (
        deployment.cache_dir if deployment is not None and deployment.cache_dir is not None else DEFAULT_CACHE_DIR)
    read_only = args.read_only or (deployment is not None and deployment.read_only) or not is_writable(cache_dir)
    return AppConfig(data, cache_dir, read_only, deployment)


def is_writable(folder: Path) -> bool:
    """Whether ``folder`` can be written, or created inside its nearest existing parent."""
    probe = folder.expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK)


def resolve_dataset(text: str | Path) -> Path:
    """Any existing folder (a local dashboard; a deployment confines this, see :mod:`vfs.deploy`)."""
    if not str(text).strip():
        raise DatasetError("Give a dataset folder.")
    if "\x00" in str(text):
        raise DatasetError("The dataset folder contains a NUL character.")
    path = Path(str(text).strip()).expanduser()
    try:
        resolved = path.resolve()
        exists, is_dir = resolved.exists(), resolved.is_dir()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "symlink loop"
        raise DatasetError(f"Dataset folder {str(text).strip()[:200]} cannot be opened ({reason}).") from None
    if not exists:
        raise DatasetError(f"Dataset folder {resolved} does not exist.")
    if not is_dir:
        raise DatasetError(f"{resolved} is a file, not a folder of images.")
    return resolved


def names_demo(text: str) -> bool:
    """Whether ``text`` names the demo folder, which is gathered when it is first opened."""
    try:
        return Path(text.strip()).expanduser().resolve() == DEMO_DIR.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL bytes, symlink loops, names too long
        return False


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it (shorter, and portable in links)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(path)


class CacheState(Enum):
    MISSING = "missing"
    OUT_OF_DATE = "out of date"  # some dataset images are not accounted for, or were removed
    READY = "ready"


@dataclass(eq=False)
class Selection:
    """The dataset, model, layer and grid the sidebar has chosen."""

    root: Path
    model: FeatureModel
    layer: LayerInfo
    grid: int
    cache_dir: Path
    weights_file: Path | None = None  # a deployment's weights file the model was loaded from

    def index_command(self) -> str:
        """The command that builds this selection's cache outside the dashboard."""
        weights = f" --weights {self.weights_file}" if self.weights_file is not None else ""
        return (f"vfs index {display_path(self.root)} --model {self.model.name}{weights} --layer {self.layer.name} "
                f"--grid {self.grid} --cache-dir {display_path(self.cache_dir)}")

    @cached_property
    def spec(self) -> CacheSpec:
        return cache_spec(self.model, self.layer, self.grid)

    @cached_property
    def cache_path(self) -> Path:
        return cache_path(self.cache_dir, self.root, self.spec)

    def describe(self) -> str:
        return f"{display_path(self.root)} · {self.model.label} · {self.layer.name} · grid {self.grid}×{self.grid}"

    def cache_state(self, dataset_images: int) -> tuple[CacheState, int]:
        """The cache's state against the dataset's image count, and how many images it holds."""
        info = read_cache(self.cache_path)
        if info is None:
            return CacheState.MISSING, 0
        state = CacheState.READY if info.images + info.skipped == dataset_images else CacheState.OUT_OF_DATE
        return state, info.images

    def build(self, progress: Callable[[Progress], None], cancel: threading.Event) -> IndexSummary:
        """Create or update the cache (the background job's work)."""
        return build_index(self.root, self.model, self.layer, self.grid, self.cache_dir,
                           progress=progress, cancel=cancel)

    def feature_search(self) -> FeatureSearch:
        return FeatureSearch(self.root, model=self.model, layer=self.layer.name, grid=self.grid,
                             cache_dir=self.cache_dir)


def describe_progress(progress: Progress | None) -> str:
    return "starting…" if progress is None else describe(progress)


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
    if len(data) > max_mb * 1024 * 1024:
        raise ImageError(f"{name} is {len(data) / 1024 / 1024:.1f} MB; uploads are limited to {max_mb} MB.")
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


def canvas_size(image_size: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """The largest (width, height) within the limits with the image's aspect ratio."""
    width, height = image_size
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass
class SearchOutcome:
    result: SearchResult
    query: QueryImage
    region: Region
    seconds: float  # query features plus search


@dataclass
class ShownSearch:
    """A search with what displays it, kept so reruns that do not change it cost nothing."""

    key: tuple
    outcome: SearchOutcome
    number: int  # searches run in this session; names the gallery
    thumbnails: list[bytes]
    figure: go.Figure | None = None  # built after the gallery is on its way to the browser


def run_search(search: FeatureSearch, root: Path, query: QueryImage, region: Region, top_k: int,
               exclude_query: bool, approximate: bool = False) -> SearchOutcome:
    started = time.perf_counter()
    result = search.search(query.source(root), top_k=top_k, exclude_query=exclude_query, approximate=approximate,
                           **region.search_arguments(search.grid))  # type: ignore[arg-type]
    return SearchOutcome(result, query, region, time.perf_counter() - started)


def describe_search(outcome: SearchOutcome, images: int) -> str:
    """What was searched and how long it took; an approximate search says so."""
    result = outcome.result
    scope = (f"Approximate: the region index's {result.candidates:,} candidates of {images:,} images scored exactly"
             if result.approximate else f"Searched {images:,} images")
    return (f"{scope} in {result.seconds * 1000:.0f} ms ({outcome.seconds * 1000:.0f} ms with the query's features, "
            f"{result.backend}) · window {result.window_shape[0]}×{result.window_shape[1]} cells")


def region_index_problem(search: FeatureSearch) -> str | None:
    """Why the cache cannot be searched approximately (no region index, out of date, no FAISS), or None."""
    try:
        search.region_index  # noqa: B018 - opened once, here, so the first approximate search is quick
    except VfsError as exc:
        return str(exc)
    return None


def window_heatmap(search: FeatureSearch, root: Path, query: QueryImage, region: Region, index: int) -> np.ndarray:
    """The score of every window position in dataset image ``index``, (G-h+1, G-w+1)."""
    grid_query = region_query(search, query.source(root), region)
    candidate = np.asarray(search.cache.features(index))[None]
    backend = get_backend(search.backend) if isinstance(search.backend, str) else search.backend
    return backend.window_scores(candidate, cell_norms2(candidate), grid_query)[0]


def link_layer(shared: SharedSearch, model: FeatureModel) -> tuple[LayerInfo | None, int | None, list[ShareError]]:
    """The link's layer and grid if ``model`` has them; problems otherwise."""
    if shared.layer is None:
        return None, None, []
    names = [info.name for info in model.layers]
    if shared.layer not in names:
        return None, None, [ShareError(f"The link's layer {shared.layer!r} is not a layer of {model.label}; "
                                       f"showing {model.default_layer.name} instead.")]
    layer = model.layer(shared.layer)
    if shared.grid is not None and shared.grid > max_grid(layer):
        return layer, None, [ShareError(f"The link's grid {shared.grid} is finer than {layer.describe()} "
                                        f"allows (at most {max_grid(layer)}); showing {layer.default_grid}.")]
    return layer, shared.grid, []


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


def max_grid(layer: LayerInfo) -> int:
    """Finer grids than the layer's own resolution only repeat its cells."""
    return max(layer.height, layer.width)
