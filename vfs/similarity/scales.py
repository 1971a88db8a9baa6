"""Scale-tolerant search: the same object larger or smaller in a dataset image still matches.

The window a region is compared with has the region's own size in grid cells, so an object at
another size in a dataset image matches only in part. A *scale* ``s`` is the object's size in the
dataset image relative to the query (0.5: half as large). Each scale is an image-pyramid level:
every dataset image is fed to the model resized to ``S / s`` (``S`` the model's input size) and
pooled to a ``G / s`` grid (``G`` the base grid), so a grid cell still covers the same number of
model-input pixels and the object covers as many cells as the query's region does. A level is an
ordinary feature cache (its input size and grid are in its key), built by indexing like any other.

Scores are comparable across scales: at every level the score is the cosine between the same
query kernel and a window of the same shape, from the same layer at the same cell size, so an
image's score is its best over all levels and windows, and it reports the scale it was found at.

Costs and limits: level ``s`` computes ``1/s²`` as many input pixels and cells as the base, so
``0.5`` costs four times the base's indexing time and cache size, ``2`` a quarter. Scales above 1
coarsen the dataset grid: a region wider than ``G / s`` cells cannot be placed and is not
searched at that scale. The pyramid is of input sizes, so it helps as far as the network's
features are scale-equivariant: receptive fields do not shrink with the object, and at a late layer
the query region's cells describe its photo's surroundings too, which do not scale with it; searching
the region alone (:mod:`vfs.features.region_alone`) is what finds half-size objects there (docs/queries.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vfs.cache.feature_cache import FeatureCache
from vfs.errors import MaskError
from vfs.features.geometry import window_to_box
from vfs.similarity.exact import Match, Query, SearchResult, SimilarityBackend, search
from vfs.similarity.ranking import top_k_indices

#: What ``--scales multi`` and the dashboard's "any size" mean: half to twice the query's size.
MULTI_SCALES = (0.5, 0.71, 1.0, 1.41, 2.0)


@dataclass(frozen=True)
class ScaleLevel:
    scale: float
    input_size: tuple[int, int]  # (height, width) the images are resized to
    grid: int


def scale_level(scale: float, input_size: tuple[int, int], grid: int) -> ScaleLevel:
    """The pyramid level at which an object ``scale`` times the query's size covers the query's cells."""
    if not 0.1 <= scale <= 10:
        raise MaskError(f"A scale must be between 0.1 and 10, got {scale}.")
    height, width = input_size
    size = (max(16, round(height / scale)), max(16, round(width / scale)))
    return ScaleLevel(scale, size, max(1, round(grid / scale)))


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.5,1,2"`` or ``"multi"`` as sorted, distinct scales."""
    if text.strip() == "multi":
        return MULTI_SCALES
    try:
        scales = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise MaskError(f"Scales are numbers separated by commas (or 'multi'), got {text!r}.") from None
    if not scales:
        raise MaskError("Give at least one scale.")
    return scales


def placed_query(query: Query, grid: int) -> Query | None:
    """The query's region (its bounding box) on a ``grid``×``grid`` canvas; None where it does not fit."""
    top, left, bottom, right = query.bounds
    h, w = bottom - top, right - left
    if h > grid or w > grid:
        return None
    features = np.zeros((query.features.shape[0], grid, grid), np.float32)
    features[:, :h, :w] = query.features[:, top:bottom, left:right]
    weights = np.zeros((grid, grid), np.float32)
    weights[:h, :w] = query.grid_mask[top:bottom, left:right]
    return Query(features, weights)


@dataclass
class ScaledSearchResult(SearchResult):
    """A search over several scales. ``scores`` is each image's best over every level; ``windows`` are
    (top, left) on the grid of the level in ``image_scales``."""

    image_scales: np.ndarray | None = None  # (N,) the scale of each image's best window
    level_grids: dict[float, int] | None = None


def search_scales(base: FeatureCache, levels: Sequence[tuple[ScaleLevel, FeatureCache]], query: Query,
                  top_k: int = 20, exclude: list[int] | None = None,
                  backend: SimilarityBackend | str = "auto") -> ScaledSearchResult:
    """Every image's best window over the levels (in the order given: on a tie the earlier one wins).
    Images are the rows of ``base`` (the scale-1 cache, which ``query`` is on), found in each level by path."""
    started = time.perf_counter()
    n = len(base)
    scores = np.full(n, -np.inf)
    windows = np.zeros((n, 2), np.int64)
    image_scales = np.full(n, np.nan)
    grids: dict[float, int] = {}
    engine_name = ""
    for level, cache in levels:
        placed = placed_query(query, cache.grid)
        if placed is None:
            continue
        result = search(cache, placed, top_k=0, backend=backend)
        engine_name = result.backend
        grids[level.scale] = cache.grid
        rows = np.arange(n) if cache.paths == base.paths else np.array(
            [-1 if (row := cache.index_of(path)) is None else row for path in base.paths], dtype=np.int64)
        found = rows >= 0
        level_scores = np.where(found, result.scores[np.maximum(rows, 0)], -np.inf).astype(np.float64)
        better = level_scores > scores  # strictly: on a tie the earlier level (the order given) wins
        scores[better] = level_scores[better]
        windows[better] = result.windows[rows[better]]
        image_scales[better] = level.scale
    if not grids:
        raise MaskError("The region is too large for every scale asked for; include scale 1.")
    if exclude:
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    h, w = query.window_shape
    matches = []
    for i in top_k_indices(scores, top_k):
        top, left = (int(v) for v in windows[i])
        size = (int(base.image_sizes[i, 0]), int(base.image_sizes[i, 1]))
        grid = grids[float(image_scales[i])]
        matches.append(Match(int(i), base.paths[i], base.labels[i], float(scores[i]),
                             window_to_box(top, left, h, w, size, grid), (top, left, h, w), float(image_scales[i])))
    return ScaledSearchResult(scores.astype(np.float32), windows, (h, w), query.grid_mask, matches,
                              time.perf_counter() - started, engine_name, image_scales=image_scales, level_grids=grids)
