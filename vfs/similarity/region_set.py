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

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "score": round(self.score, 6),
                "boxes": [[round(v, 2) for v in box] for box in self.boxes],
                "region_scores": [round(s, 6) for s in self.region_scores]}


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
    negative = [region.negative for region in regions]
    scores = combine_scores(np.stack([result.scores for result in searched]), negative, negative_weight)
    if exclude:
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    final = RegionSetResult(scores.astype(np.float32), searched, negative, negative_weight, [],
                            time.perf_counter() - started, searched[0].backend)
    final.matches = set_matches(cache, final, top_k_indices(scores, top_k))
    return final


def set_matches(cache: FeatureCache, result: RegionSetResult, rows: Sequence[int] | np.ndarray) -> list[RegionSetMatch]:
    """The matches of images ``rows`` (in that order): each positive region's best window as a box, every
    region's score."""
    matches = []
    for i in rows:
        i = int(i)
        size = (int(cache.image_sizes[i, 0]), int(cache.image_sizes[i, 1]))
        boxes = [window_to_box(int(region.windows[i, 0]), int(region.windows[i, 1]), *region.window_shape, size,
                               cache.grid)
                 for region, is_negative in zip(result.regions, result.negative) if not is_negative]
        matches.append(RegionSetMatch(i, cache.paths[i], cache.labels[i], float(result.scores[i]), boxes,
                                      [float(region.scores[i]) for region in result.regions]))
    return matches
