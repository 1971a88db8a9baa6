"""A search's best matches among part of the dataset: the images of some labels, or of a map cluster.

A search already scores every image (:attr:`vfs.similarity.exact.SearchResult.scores`, with each image's
best window in ``windows``; a region set's, every region's), so restricting the results to a subset
ranks those scores again instead of searching again. Ranks, ties and boxes are exactly what :func:`vfs.similarity.exact.search`
gives for the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfs.cache.feature_cache import FeatureCache
from vfs.features.geometry import window_to_box
from vfs.similarity.exact import Match, SearchResult
from vfs.similarity.ranking import top_k_indices
from vfs.similarity.region_set import RegionSetMatch, RegionSetResult, set_matches
from vfs.similarity.scales import ScaledSearchResult


@dataclass(frozen=True)
class Subset:
    """Images of one dataset chosen by path, e.g. a cluster of the dataset map."""

    root: Path  # the dataset folder the paths are relative to
    description: str  # for the user, e.g. "cluster 3.1"
    paths: frozenset[str]

    def rows(self, cache: FeatureCache) -> np.ndarray:
        """Boolean mask over ``cache``'s images of those in the subset."""
        mask = np.zeros(len(cache), dtype=bool)
        found = [row for row in (cache.index_of(path) for path in self.paths) if row is not None]
        mask[found] = True
        return mask


def _allowed_scores(scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != scores.shape:
        raise ValueError(f"A mask of {allowed.shape} images for a search of {scores.shape}.")
    return np.where(allowed, scores.astype(np.float64), -np.inf)


def top_matches(result: SearchResult, cache: FeatureCache, allowed: np.ndarray, k: int) -> list[Match]:
    """The ``k`` best matches among the images where ``allowed`` (a boolean mask over the cache) holds."""
    scores = _allowed_scores(result.scores, allowed)
    h, w = result.window_shape
    # a multi-size search's windows lie on the grid of each image's level, not the base's
    scaled = isinstance(result, ScaledSearchResult) and result.image_scales is not None and result.level_grids
    matches = []
    for row in top_k_indices(scores, k):
        top, left = (int(v) for v in result.windows[row])
        size = (int(cache.image_sizes[row, 0]), int(cache.image_sizes[row, 1]))
        scale = float(result.image_scales[row]) if scaled else 1.0  # type: ignore[union-attr]
        grid = result.level_grids[scale] if scaled else cache.grid  # type: ignore[union-attr,index]
        matches.append(Match(int(row), cache.paths[row], cache.labels[row], float(result.scores[row]),
                             window_to_box(top, left, h, w, size, grid), (top, left, h, w), scale))
    return matches



def top_set_matches(result: RegionSetResult, cache: FeatureCache, allowed: np.ndarray, k: int) -> list[RegionSetMatch]:
    """A region set's ``k`` best matches among the images where ``allowed`` holds (each with all its boxes)."""
    return set_matches(cache, result, top_k_indices(_allowed_scores(result.scores, allowed), k))
