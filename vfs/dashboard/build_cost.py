"""What building a missing feature cache costs, shown before the user asks for it.

Time is the dataset's image count times the model's seconds per image at that layer, measured on
this machine with a short batch (decoding, which runs in parallel threads, is not counted); disk is
each image's float16 C×G×G grid plus its float32 G×G squared cell norms (``cache.feature_cache``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vfs.cache.catalog import format_bytes
from vfs.cache.feature_cache import MANIFEST, cache_path
from vfs.cache.indexing import cache_spec
from vfs.features.models import FeatureModel, LayerInfo

#: A missing cache this quick to build (a demo, a small folder) is built without asking.
AUTO_BUILD_SECONDS = 20.0
#: The images timed per measurement: enough to amortise per-call overhead, few enough to stay under a second.
MEASURE_IMAGES = 8


@dataclass(frozen=True)
class BuildCost:
    images: int
    seconds: float
    bytes: int

    @property
    def quick(self) -> bool:
        return self.seconds <= AUTO_BUILD_SECONDS

    def describe(self) -> str:
        return (f"{self.images:,} images, about {about(self.seconds)} on this machine, "
                f"{format_bytes(self.bytes)} on disk")


def about(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def cache_bytes(images: int, channels: int, grid: int) -> int:
    """Disk taken by ``images`` rows: the float16 grid and the float32 squared norms of its cells."""
    return images * grid * grid * (2 * channels + 4)


def build_cost(images: int, layer: LayerInfo, grid: int, seconds_per_image: float) -> BuildCost:
    return BuildCost(images, images * seconds_per_image, cache_bytes(images, layer.channels, grid))


def seconds_per_image(model: FeatureModel, layer: LayerInfo, grid: int, images: int = MEASURE_IMAGES) -> float:
    """The model's time per image for ``layer`` on this machine: one warm-up batch, then one timed batch."""
    import torch

    height, width = model.preprocessing.input_size
    batch = torch.zeros(images, 3, height, width)
    model.grid_features(batch[:1], layer, grid)
    started = time.perf_counter()
    model.grid_features(batch, layer, grid)
    return (time.perf_counter() - started) / images


def cached_grids(cache_dir: Path, root: Path, model: FeatureModel, layer: LayerInfo, grids: range) -> list[int]:
    """The grids of ``layer`` that have a feature cache of ``root`` (complete or not)."""
    return [grid for grid in grids
            if (cache_path(cache_dir, root, cache_spec(model, layer, grid)) / MANIFEST).is_file()]
