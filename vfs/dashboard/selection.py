"""The dataset, model, layer and grid the sidebar selects, and the state of their feature cache."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path

from vfs._progress import describe
from vfs.cache.catalog import read_cache
from vfs.cache.feature_cache import CacheSpec, cache_path
from vfs.cache.indexing import IndexSummary, Progress, build_index, cache_spec
from vfs.dashboard.links import SharedSearch, ShareError
from vfs.errors import DatasetError, ModelError, WeightsUnavailableError
from vfs.feature_search import FeatureSearch
from vfs.features.models import FeatureModel, LayerInfo

#: Images per model batch of a dashboard build: measured side by side (bench/dashboard_indexing.py, RESULTS.md),
#: dashboard builds in batches of 8 indexed faster than in the command line's 32. Cancel does not wait for the
#: batch in flight (IndexJob.stopping).
BUILD_BATCH = 8


def resolve_dataset(text: str | Path) -> Path:
    """Any existing folder (a local dashboard; a deployment confines this, see :mod:`vfs.dashboard.deployment`)."""
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
        return build_index(self.root, self.model, self.layer, self.grid, self.cache_dir, batch_size=BUILD_BATCH,
                           progress=progress, cancel=cancel)

    def feature_search(self) -> FeatureSearch:
        return FeatureSearch(self.root, model=self.model, layer=self.layer.name, grid=self.grid,
                             cache_dir=self.cache_dir)


def describe_progress(progress: Progress | None) -> str:
    return "starting…" if progress is None else describe(progress)


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


def max_grid(layer: LayerInfo) -> int:
    """Finer grids than the layer's own resolution only repeat its cells."""
    return max(layer.height, layer.width)


def model_problem(name: str, error: ModelError) -> str:
    """One line, in the dashboard's terms, for a model that cannot load (``load_model``'s message names CLI flags)."""
    if isinstance(error, WeightsUnavailableError):
        return (f"{name} has no weights on this machine and they could not be downloaded: choose a model marked "
                "offline, or connect to the internet.")
    return str(error).splitlines()[0]
