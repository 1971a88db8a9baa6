"""An approximate first stage for very large caches: region descriptors in FAISS, re-ranked exactly.

For every image, square windows of a few sizes (1 and 3 cells, then about ×1.6 up to the whole
grid, at a stride of a third of their size) are average-pooled over their cells and
L2-normalised: 84 C-dimensional vectors an image at G=7. Each size has its own FAISS inner-product
index, stored beside the cache in ``regions/`` (``size-S.faiss`` files written by
``faiss.write_index``, and ``regions.json``: the layout, the FAISS factory strings and the
manifest the index was built from, so a changed cache is noticed instead of silently served).

A query's region (its mask weights over its bounding box) is pooled the same way and looked up
in the index of the window size nearest the side of its area; the images owning the nearest
windows are the candidates (4000, or 1000 for a one-cell region), and :func:`vfs.similarity.exact.search`
scores exactly those, every window of them.
Scores and windows of the matches are therefore exact; what is approximate is which images
were scored. The result says so (:class:`ApproximateSearchResult`).

FAISS is an optional extra: ``pip install 'vfs[ann]'``. Up to :data:`FLAT_LIMIT` values per size
the index is exact (``Flat``); above it an inverted file with 8-bit scalar quantisation
(``IVF{nlist},SQ8``, nlist ≈ √vectors / 8), searched with ``nprobe`` lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vfs.cache.feature_cache import MANIFEST, FeatureCache
from vfs.errors import CacheError, VfsError
from vfs.similarity.exact import Query, SearchResult, SimilarityBackend, search

try:
    import faiss
except ImportError:
    raise VfsError("The approximate index needs FAISS: pip install 'vfs[ann]'") from None

INDEX_FOLDER = "regions"
INDEX_FORMAT = 1
#: Values (vectors × channels) per window size up to which the index is exact (flat) rather than an
#: inverted file: 32 MB of float32 scanned per query at most.
FLAT_LIMIT = 8_000_000
#: Images scored exactly by default; a one-cell region needs fewer, its descriptor being its exact
#: score (see :meth:`Shortlist.default_candidates`).
DEFAULT_CANDIDATES, ONE_CELL_CANDIDATES = 4000, 1000
DEFAULT_NPROBE = 16
_CHUNK_IMAGES = 8192  # images pooled at a time while building: bounded memory at any N


@dataclass(frozen=True)
class RegionLayout:
    """The windows described per image: ``size``×``size`` cells at every pair of ``positions``."""

    size: int
    positions: tuple[int, ...]  # top (and left) cell of the windows along each axis

    @property
    def windows(self) -> int:
        return len(self.positions) ** 2


def region_layouts(grid: int) -> list[RegionLayout]:
    """Window sizes 1, 3, then about ×1.6 up to the grid, at a stride of a third of their size.

    Single cells serve one-cell queries exactly; stride 1 up to size 5 keeps every small region's
    best window among the described ones (measured: coarser strides lose recall on crowded sets).
    """
    sizes = [1]
    while sizes[-1] < grid:
        sizes.append(min(grid, 3 if sizes[-1] == 1 else math.ceil(sizes[-1] * 1.6)))
    layouts = []
    for size in sizes:
        positions = list(range(0, grid - size + 1, max(1, size // 3)))
        if positions[-1] != grid - size:
            positions.append(grid - size)  # the last window touches the far border
        layouts.append(RegionLayout(size, tuple(positions)))
    return layouts


def window_weights(layouts: list[RegionLayout], grid: int) -> np.ndarray:
    """(windows, G·G) float32: row w averages the cells of window w; layouts in order, windows row-major."""
    rows = []
    for layout in layouts:
        for top in layout.positions:
            for left in layout.positions:
                cells = np.zeros((grid, grid), np.float32)
                cells[top:top + layout.size, left:left + layout.size] = 1.0 / layout.size**2
                rows.append(cells.reshape(-1))
    return np.stack(rows)


def pooled_windows(features: np.ndarray, layouts: list[RegionLayout]) -> list[np.ndarray]:
    """(n, C, G, G) features -> per layout, (n·windows, C) L2-normalised window means, image-major.

    One matrix product over the features as they are stored (cells last) pools every window.
    """
    n, c, g, _ = features.shape
    pooled = features.reshape(n * c, g * g).astype(np.float32) @ window_weights(layouts, g).T
    pooled = pooled.reshape(n, c, -1).transpose(0, 2, 1)  # (n, windows, C)
    bounds = np.cumsum([0] + [layout.windows for layout in layouts])
    return [_normalised(pooled[:, a:b].reshape(-1, c)) for a, b in zip(bounds, bounds[1:])]


def query_descriptor(query: Query) -> np.ndarray:
    """The region pooled as the index is: mask-weighted sum of its cells, L2-normalised, (1, C)."""
    top, left, bottom, right = query.bounds
    region = query.features[:, top:bottom, left:right].astype(np.float64) * query.weights
    return _normalised(region.sum(axis=(1, 2))[None].astype(np.float32))


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _factory(vectors: int, channels: int) -> str:
    if vectors * channels <= FLAT_LIMIT:
        return "Flat"
    # few lists (√n/8): assigning tens of millions of vectors stays affordable on a few cores
    return f"IVF{2 ** round(math.log2(math.sqrt(vectors) / 8))},SQ8"


def _manifest_state(cache: FeatureCache) -> list[list[Any]]:
    """What identifies the cache's content: its shards' names, row counts and checksums."""
    try:
        shards = json.loads((cache.path / MANIFEST).read_text())["shards"]
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"{cache.path / MANIFEST} is unreadable ({exc}).") from None
    return [[s["file"], s["rows"], s["crc32"]] for s in shards]


def _images(cache: FeatureCache, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of the cache's features, across shard boundaries."""
    return cache.take(np.arange(start, stop)).shards[0].features if stop > start else np.zeros(
        (0, cache.channels, cache.grid, cache.grid), np.float16)


@dataclass
class ApproximateSearchResult(SearchResult):
    """A :class:`SearchResult` whose images were chosen by the shortlist before exact scoring.

    ``scores`` is -inf and ``windows`` 0 for images that were not scored.
    """

    approximate: bool = True
    candidates: int = 0  # images scored exactly


class Shortlist:
    """The region descriptors of one cache, one FAISS index per window size."""

    def __init__(self, cache: FeatureCache, layouts: list[RegionLayout], indexes: list[Any]):
        self.cache = cache
        self.layouts = layouts
        self.indexes = indexes
        self.version = self.stored_version(cache)

    @classmethod
    def stored_version(cls, cache: FeatureCache) -> int | None:
        """Changes whenever the stored index is rewritten or removed (None: there is none)."""
        try:
            return (cls.folder(cache) / "regions.json").stat().st_mtime_ns
        except OSError:
            return None

    @staticmethod
    def folder(cache: FeatureCache) -> Path:
        return cache.path / INDEX_FOLDER

    @classmethod
    def build(cls, cache: FeatureCache, layouts: list[RegionLayout] | None = None,
              factory: dict[int, str] | None = None, seed: int = 0) -> Shortlist:
        """Describe every image of ``cache`` and write the index beside it (replacing an old one).

        ``factory``: a FAISS factory string per window size, overriding the default choice.
        """
        if len(cache) == 0:
            raise CacheError(f"{cache.path} holds no images to index.")
        started = time.perf_counter()
        layouts = layouts or region_layouts(cache.grid)
        rng = np.random.default_rng(seed)
        indexes, descriptions = [], []
        for layout in layouts:
            description = (factory or {}).get(layout.size) or _factory(len(cache) * layout.windows, cache.channels)
            descriptions.append(description)
            index = faiss.index_factory(cache.channels, description, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                ivf = faiss.extract_index_ivf(index)
                ivf.cp.niter = 10  # k-means on normalised vectors settles early
                sample_images = min(len(cache), max(1, 40 * ivf.nlist // layout.windows))
                rows = np.sort(rng.choice(len(cache), sample_images, replace=False))
                (sample,) = pooled_windows(cache.take(rows).shards[0].features, [layout])
                index.train(sample)
            indexes.append(index)
        for start in range(0, len(cache), _CHUNK_IMAGES):
            features = _images(cache, start, min(len(cache), start + _CHUNK_IMAGES))
            for index, vectors in zip(indexes, pooled_windows(features, layouts)):
                index.add(vectors)
        built = cls(cache, layouts, indexes)
        built._write(_manifest_state(cache), descriptions, time.perf_counter() - started)
        built.version = cls.stored_version(cache)
        return built

    def _write(self, manifest: list[list[Any]], factories: list[str], seconds: float) -> None:
        folder = self.folder(self.cache)
        folder.mkdir(exist_ok=True)
        (folder / "regions.json").unlink(missing_ok=True)  # until rewritten, the old index is never opened
        for layout, index in zip(self.layouts, self.indexes):
            tmp = folder / f".size-{layout.size}.faiss.tmp-{os.getpid()}-{threading.get_ident()}"
            faiss.write_index(index, str(tmp))
            os.replace(tmp, folder / f"size-{layout.size}.faiss")
        meta = {"format": INDEX_FORMAT, "grid": self.cache.grid, "channels": self.cache.channels,
                "images": len(self.cache), "manifest": manifest, "factories": factories,
                "build_seconds": round(seconds, 2), "layouts": [dataclasses.asdict(lay) for lay in self.layouts]}
        tmp = folder / f".regions.json.tmp-{os.getpid()}-{threading.get_ident()}"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder / "regions.json")

    @classmethod
    def open(cls, cache: FeatureCache) -> Shortlist:
        """The stored index of ``cache``; a clear error if there is none or the cache changed since."""
        folder = cls.folder(cache)
        try:
            meta = json.loads((folder / "regions.json").read_text())
        except FileNotFoundError:
            raise CacheError(f"{cache.path} has no shortlist; build it with `vfs index --ann`.") from None
        except ValueError as exc:
            raise CacheError(f"{folder / 'regions.json'} is unreadable ({exc}); rebuild it with "
                             f"`vfs index --ann`.") from None
        if meta.get("format") != INDEX_FORMAT or meta.get("manifest") != _manifest_state(cache):
            raise CacheError(f"The shortlist of {cache.path} is out of date (the cache changed); "
                             f"rebuild it with `vfs index --ann`.")
        layouts = [RegionLayout(d["size"], tuple(d["positions"])) for d in meta["layouts"]]
        try:
            indexes = [faiss.read_index(str(folder / f"size-{layout.size}.faiss")) for layout in layouts]
        except (RuntimeError, OSError) as exc:  # FAISS reports a missing or damaged file as RuntimeError
            raise CacheError(f"The shortlist of {cache.path} is damaged ({str(exc).splitlines()[0][:200]}); "
                             "rebuild it with `vfs index --ann`.") from None
        return cls(cache, layouts, indexes)

    def _layout_for(self, query: Query) -> int:
        """The window size nearest the side of the region's area, not of its bounding box (a thin
        stroke across the grid is matched best by small windows); the area of a soft mask is its
        effective number of cells, (Σw)²/Σw²."""
        weights = query.weights
        side = math.sqrt(float(weights.sum()) ** 2 / max(float((weights**2).sum()), 1e-12))
        return min(range(len(self.layouts)), key=lambda i: (abs(math.log(self.layouts[i].size / side)), i))

    def default_candidates(self, query: Query) -> int:
        """How many images to score exactly when not told: the pooled descriptor of a larger region
        only approximates its score, so it needs more candidates than a single cell, whose
        descriptor (the cell itself, normalised) gives the exact score of every one-cell window."""
        one_cell = self.layouts[self._layout_for(query)].size == 1 and int((query.weights > 0).sum()) == 1
        return ONE_CELL_CANDIDATES if one_cell else DEFAULT_CANDIDATES

    def candidates(self, query: Query, count: int | None = None, nprobe: int = DEFAULT_NPROBE) -> np.ndarray:
        """Rows of the ``count`` images whose windows are nearest the region, ascending."""
        which = self._layout_for(query)
        layout, index = self.layouts[which], self.indexes[which]
        count = min(count or self.default_candidates(query), len(self.cache))
        if index.ntotal != len(self.cache) * layout.windows:
            raise CacheError(f"The shortlist of {self.cache.path} does not match the cache; rebuild it.")
        if not isinstance(index, faiss.IndexFlat):
            faiss.extract_index_ivf(index).nprobe = nprobe
        descriptor = query_descriptor(query)
        wanted = count * min(layout.windows, 4)  # overlapping windows of one image are alike and come together
        while True:
            _, ids = index.search(descriptor, min(index.ntotal, wanted))
            images = ids[0][ids[0] >= 0] // layout.windows
            _, first = np.unique(images, return_index=True)
            exhausted = wanted >= index.ntotal or (ids[0] < 0).any()  # every probed window was returned
            if len(first) >= count or exhausted:
                return np.sort(images[np.sort(first)[:count]])
            wanted *= 2  # too few distinct images among the nearest windows: look further

    def search(self, query: Query, top_k: int = 20, exclude: list[int] | None = None,
               candidates: int | None = None, nprobe: int = DEFAULT_NPROBE,
               backend: SimilarityBackend | str = "auto") -> ApproximateSearchResult:
        """The ``top_k`` best of the candidate images, scored exactly (ties by dataset order).

        ``candidates``: how many images the index proposes (default: :meth:`default_candidates`).
        """
        started = time.perf_counter()
        rows = self.candidates(query, candidates, nprobe)
        subset = self.cache.take(rows)
        position = {int(row): i for i, row in enumerate(rows)}
        inner_exclude = [position[i] for i in (exclude or []) if i in position]
        exact = search(subset, query, top_k=top_k, exclude=inner_exclude, backend=backend)
        scores = np.full(len(self.cache), -np.inf, np.float32)
        scores[rows] = exact.scores
        windows = np.zeros((len(self.cache), 2), np.int64)
        windows[rows] = exact.windows
        matches = [dataclasses.replace(m, index=int(rows[m.index])) for m in exact.matches]
        return ApproximateSearchResult(scores, windows, exact.window_shape, exact.grid_mask, matches,
                                       time.perf_counter() - started, f"ann+{exact.backend}",
                                       approximate=True, candidates=len(rows))


def approximate_search(cache: FeatureCache, query: Query, top_k: int = 20, exclude: list[int] | None = None,
                       candidates: int | None = None, nprobe: int = DEFAULT_NPROBE,
                       backend: SimilarityBackend | str = "auto") -> ApproximateSearchResult:
    """:meth:`Shortlist.search` with the stored index of ``cache``."""
    return Shortlist.open(cache).search(query, top_k, exclude, candidates, nprobe, backend)


__all__ = ["ApproximateSearchResult", "Shortlist", "RegionLayout", "approximate_search",
           "pooled_windows", "query_descriptor", "region_layouts", "window_weights"]
