"""The notebook-friendly entry point: one object per (dataset, model, layer, grid)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vfs.cache import FeatureCache, cache_path
from vfs.errors import ImageError
from vfs.geometry import box_to_grid, load_mask, mask_to_grid
from vfs.images import DEFAULT_MAX_PIXELS, load_image
from vfs.indexing import DEFAULT_CACHE_DIR, SHARD_IMAGES, IndexSummary, Progress, build_index, cache_spec
from vfs.models import DEFAULT_MODEL, FeatureModel, load_model
from vfs.search import Query, SearchResult, SimilarityBackend, search

ImageSource = str | Path | bytes | Image.Image


class FeatureSearch:
    """Search a folder of images for regions that a model's layer sees as alike.

    >>> fs = FeatureSearch("photos", layer="blocks.5")      # doctest: +SKIP
    >>> fs.index()                                          # doctest: +SKIP
    >>> result = fs.search("photos/cat.jpg", box=(40, 30, 120, 110), top_k=5)  # doctest: +SKIP
    >>> [(m.path, m.score, m.box) for m in result.matches]  # doctest: +SKIP
    """

    def __init__(self, data: str | Path, model: str | FeatureModel = DEFAULT_MODEL, layer: str | None = None,
                 grid: int | None = None, weights: str | Path | None = None,
                 cache_dir: str | Path = DEFAULT_CACHE_DIR, device: str | None = None,
                 backend: SimilarityBackend | str = "auto"):
        self.data = Path(data).expanduser()
        self.model = model if isinstance(model, FeatureModel) else load_model(model, weights, device)
        self.layer = self.model.layer(layer) if layer else self.model.default_layer
        self.spec = cache_spec(self.model, self.layer, grid)
        self.cache_dir = Path(cache_dir).expanduser()
        self.cache_path = cache_path(self.cache_dir, self.data, self.spec)
        self.backend = backend
        self._cache: FeatureCache | None = None
        self._lock = threading.Lock()

    @property
    def grid(self) -> int:
        return self.spec.grid

    def index(self, batch_size: int = 32, workers: int = 2, progress: Callable[[Progress], None] | None = None,
              cancel: threading.Event | None = None, shard_images: int = SHARD_IMAGES) -> IndexSummary:
        """Extract what is new or changed; the open cache is reloaded afterwards."""
        summary = build_index(self.data, self.model, self.layer, self.spec.grid, self.cache_dir, batch_size,
                              workers, progress, cancel, shard_images=shard_images)
        with self._lock:
            self._cache = None
        return summary

    @property
    def cache(self) -> FeatureCache:
        with self._lock:
            if self._cache is None:
                self._cache = FeatureCache.open(self.cache_path, self.data)
            return self._cache

    def query_features(self, image: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
        """The query grid (C, G, G) float32 (rounded through float16 like the cache) and the image size."""
        path = None if isinstance(image, (bytes, Image.Image)) else Path(image).expanduser()
        index = self._cache_row(path) if path is not None else None
        if index is not None:  # a dataset image: its cached grid, no forward pass
            width, height = self.cache.image_sizes[index]
            return self.cache.features(index).astype(np.float32), (int(width), int(height))
        picture = load_image(path if path is not None else image, max_pixels=DEFAULT_MAX_PIXELS)
        grid = self.model.grid_features(self.model.preprocessing(picture)[None], self.layer, self.spec.grid)
        return grid[0].numpy().astype(np.float16).astype(np.float32), picture.size

    def _cache_row(self, path: Path) -> int | None:
        """The cache row of a dataset file, if it is in the cache."""
        try:
            return self.cache.index_of(path.resolve().relative_to(self.data.resolve()).as_posix())
        except (ValueError, OSError):
            return None

    def grid_mask(self, image_size: tuple[int, int], mask: np.ndarray | str | Path | None = None,
                  box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """A region (boolean/float mask array, mask PNG, or box in pixels) as (G, G) weights."""
        if (mask is None) == (box is None):
            raise ValueError("Give exactly one of mask= or box=.")
        if box is not None:
            return box_to_grid(box, image_size, self.spec.grid)
        if isinstance(mask, (str, Path)):
            mask = load_mask(mask, image_size)
        return mask_to_grid(np.asarray(mask), self.spec.grid)

    def search(self, image: ImageSource, mask: np.ndarray | str | Path | None = None,
               box: tuple[float, float, float, float] | None = None, top_k: int = 20,
               exclude_query: bool = False) -> SearchResult:
        """Top-k images whose best window matches the region of ``image`` (mask or box, in its pixels)."""
        features, size = self.query_features(image)
        query = Query(features, self.grid_mask(size, mask=mask, box=box))
        exclude = None
        if exclude_query and not isinstance(image, (bytes, Image.Image)):
            row = self._cache_row(Path(image).expanduser())
            exclude = [row] if row is not None else None
        return search(self.cache, query, top_k=top_k, exclude=exclude, backend=self.backend)


__all__ = ["FeatureSearch", "ImageError"]
