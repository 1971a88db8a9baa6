"""Several regions in one query: "like these, not like that".

A region set holds query regions, each from any image and each positive or negative. Every
region is searched exactly on its own (:func:`vfs.similarity.exact.search`), which gives each
image ``i`` its best-window cosine ``s_r(i)`` for every region ``r``. The set's score is

    score(i) = mean over positive r of s_r(i)  −  λ · max over negative r of s_r(i)

(the second term is 0 without negatives; λ is ``negative_weight``, 1 by default). The mean keeps
the score a cosine's scale whatever the number of positives, so an image must resemble every
positive to rank high; the maximum makes one close negative enough to push an image down. Each
positive region keeps its own best window in every result, so a match shows where each part was
found. Ties are broken by dataset order, as in single-region search.

At several scales (:mod:`vfs.similarity.scales`) each region's ``s_r(i)`` is its best over every scale, and its
window in a result is on the grid of the scale it was found at (each positive region's scale is reported).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfs.cache.feature_cache import FeatureCache
from vfs.errors import MaskError
from vfs.features.geometry import Box, window_to_box
from vfs.similarity.exact import Query, SearchResult, SimilarityBackend, search
from vfs.similarity.ranking import top_k_indices
from vfs.similarity.scales import ScaledSearchResult


@dataclass(frozen=True)
class RegionQuery:
    """One region of a set: its query grid and weights, and whether it is a negative."""

    query: Query
    negative: bool = False


@dataclass(frozen=True)
class RegionSetMatch:
    index: int
    path: str
    label: str | None
    score: float
    boxes: list[Box]  # one per positive region, in the set's order, in the original image's pixels
    region_scores: list[float]  # every region's best-window cosine, in the set's order
    scales: list[float] = field(default_factory=list)  # the scale each positive region's box was found at

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "score": round(self.score, 6),
                "boxes": [[round(v, 2) for v in box] for box in self.boxes],
                "region_scores": [round(s, 6) for s in self.region_scores], "scales": self.scales}


@dataclass
class RegionSetResult:
    scores: np.ndarray  # (N,) the set's score of every image (-inf where excluded)
    regions: list[SearchResult]  # each region's own search, in the set's order (every image scored)
    negative: list[bool]
    negative_weight: float
    matches: list[RegionSetMatch] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = ""


def combine_scores(region_scores: np.ndarray, negative: Sequence[bool], negative_weight: float = 1.0) -> np.ndarray:
    """The set's score from (R, N) per-region scores, float64 (see the module docstring)."""
    negative = np.asarray(negative, dtype=bool)
    if not (~negative).any():
        raise MaskError("A region set needs at least one positive region.")
    scores = region_scores[~negative].astype(np.float64).mean(axis=0)
    if negative.any():
        scores = scores - negative_weight * region_scores[negative].astype(np.float64).max(axis=0)
    return scores


def search_region_set(cache: FeatureCache, regions: Sequence[RegionQuery], top_k: int = 20,
                      exclude: list[int] | None = None, negative_weight: float = 1.0,
                      backend: SimilarityBackend | str = "auto") -> RegionSetResult:
    """Score every image of ``cache`` against every region; the ``top_k`` best by the set's score become matches."""
    if not regions:
        raise MaskError("A region set needs at least one region.")
    started = time.perf_counter()
    searched = [search(cache, region.query, top_k=0, backend=backend) for region in regions]
    return combine_region_searches(cache, searched, [region.negative for region in regions], top_k, exclude,
                                   negative_weight, started)


def combine_region_searches(cache: FeatureCache, searched: Sequence[SearchResult], negative: Sequence[bool],
                            top_k: int = 20, exclude: list[int] | None = None, negative_weight: float = 1.0,
                            started: float | None = None) -> RegionSetResult:
    """The set's result from each region's own search of ``cache`` (every image scored; at one scale or several),
    in the set's order; ``started``: when the searches began (``time.perf_counter()``), for the time taken."""
    if not searched:
        raise MaskError("A region set needs at least one region.")
    negative = [bool(flag) for flag in negative]
    scores = combine_scores(np.stack([result.scores for result in searched]), negative, negative_weight)
    if exclude:
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    seconds = 0.0 if started is None else time.perf_counter() - started
    final = RegionSetResult(scores.astype(np.float32), list(searched), negative, negative_weight, [], seconds,
                            searched[0].backend)
    final.matches = set_matches(cache, final, top_k_indices(scores, top_k))
    return final


def set_matches(cache: FeatureCache, result: RegionSetResult, rows: Sequence[int] | np.ndarray) -> list[RegionSetMatch]:
    """The matches of images ``rows`` (in that order): each positive region's best window as a box (on the grid of
    the scale it was found at), every region's score."""
    positives = [region for region, is_negative in zip(result.regions, result.negative) if not is_negative]
    matches = []
    for i in rows:
        i = int(i)
        found = [found_window(cache, region, i) for region in positives]
        matches.append(RegionSetMatch(i, cache.paths[i], cache.labels[i], float(result.scores[i]),
                                      [box for box, _ in found],
                                      [float(region.scores[i]) for region in result.regions],
                                      [scale for _, scale in found]))
    return matches


def found_window(cache: FeatureCache, region: SearchResult, image: int) -> tuple[Box, float]:
    """``region``'s best window in ``image`` (a row of ``cache``) in the image's pixels, and the scale it was found at
    (its window is on that scale's grid; 1 for a search at one scale)."""
    scale, grid = 1.0, cache.grid
    if isinstance(region, ScaledSearchResult) and region.image_scales is not None and region.level_grids:
        scale = float(region.image_scales[image])
        grid = region.level_grids[scale]
    size = (int(cache.image_sizes[image, 0]), int(cache.image_sizes[image, 1]))
    top, left = (int(v) for v in region.windows[image])
    return window_to_box(top, left, *region.window_shape, size, grid), scale
