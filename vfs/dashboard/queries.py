"""The Search page's queries beyond one region at one size (docs/queries.md): object sizes (scales),
region sets ("like these, not like that") and the modes of the matches. Streamlit-free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfs.cache.catalog import read_cache
from vfs.cache.feature_cache import FeatureCache
from vfs.dashboard.build_cost import BuildCost, cache_bytes
from vfs.dashboard.query_images import QueryImage
from vfs.feature_search import FeatureSearch, QueryRegion
from vfs.features.geometry import Box
from vfs.similarity.exact import SearchResult
from vfs.similarity.region import Region
from vfs.similarity.region_set import RegionSetMatch, RegionSetResult, found_window
from vfs.similarity.scales import MULTI_SCALES, scale_level

AS_DRAWN, ANY_SIZE = "as drawn", "any size (½–2×)"
#: The most regions a set (and so a link) holds: each is searched on its own, so each costs a search.
MAX_REGIONS = 8
#: The matches grouped into modes (vfs.analysis.match_modes' default).
MODE_MATCHES = 200
_FRACTIONS = {0.5: "½", 0.25: "¼", 0.75: "¾"}


def scales_for(any_size: bool) -> tuple[float, ...]:
    return MULTI_SCALES if any_size else (1.0,)


def scale_caption(scale: float) -> str:
    """``"½× size"`` for a match found at another size than the query's; empty at scale 1."""
    if scale == 1.0:
        return ""
    number = _FRACTIONS.get(scale, f"{scale:g}")
    return f"{number}× size"


@dataclass(frozen=True)
class MissingLevel:
    """An image-pyramid level a multi-size search needs that is not (fully) indexed yet."""

    scale: float
    search: FeatureSearch  # the level's searcher; ``search.index()`` builds it
    cost: BuildCost


def level_cost(base_seconds_per_image: float, images: int, channels: int, grid: int, scale: float) -> BuildCost:
    """Level ``scale`` feeds the model 1/scale² as many pixels as the base and stores a grid of ``grid / scale``."""
    level_grid = max(1, round(grid / scale))
    return BuildCost(images, images * base_seconds_per_image / scale ** 2, cache_bytes(images, channels, level_grid))


def missing_levels(search: FeatureSearch, scales: tuple[float, ...], dataset_images: int,
                   base_seconds_per_image: float) -> list[MissingLevel]:
    """The levels of ``scales`` (other than 1) whose cache is missing or holds fewer than the dataset's images."""
    missing = []
    for scale in scales:
        if scale == 1.0:
            continue
        level = search.scale_level(scale)
        info = read_cache(level.cache_path)
        if info is None or info.images + info.skipped < dataset_images:
            cost = level_cost(base_seconds_per_image, dataset_images, search.layer.channels, search.grid, scale)
            missing.append(MissingLevel(scale, level, cost))
    return missing


def total_cost(levels: list[MissingLevel]) -> BuildCost:
    return BuildCost(max((level.cost.images for level in levels), default=0),
                     sum(level.cost.seconds for level in levels), sum(level.cost.bytes for level in levels))


def level_grid(scale: float, search: FeatureSearch) -> int:
    return scale_level(scale, search.card.preprocessing.input_size, search.grid).grid


# --- region sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetRegion:
    """One region of the Search page's query set: its image, the region on it, and its sign."""

    query: QueryImage
    region: Region
    negative: bool = False

    @property
    def key(self) -> str:
        return f"{'-' if self.negative else '+'}{self.query.key}:{self.region.token}"


def add_region(regions: tuple[SetRegion, ...], new: SetRegion) -> tuple[SetRegion, ...]:
    """The set with ``new`` added last (an equal region drawn again replaces itself; at most MAX_REGIONS, the
    oldest dropped first)."""
    kept = tuple(r for r in regions if (r.query.key, r.region.token) != (new.query.key, new.region.token))
    return (kept + (new,))[-MAX_REGIONS:]


def remove_region(regions: tuple[SetRegion, ...], key: str) -> tuple[SetRegion, ...]:
    return tuple(r for r in regions if r.key != key)


def searches_as_set(regions: tuple[SetRegion, ...]) -> bool:
    """A set of one positive region is an ordinary search; two regions, or any negative, is a set."""
    return any(r.negative for r in regions) or len(regions) >= 2


def set_problem(regions: tuple[SetRegion, ...]) -> str | None:
    if regions and all(r.negative for r in regions):
        return "The query holds only negative regions: add a region to look for (\"Add to query\")."
    return None


def query_regions(regions: tuple[SetRegion, ...], root: Path, grid: int) -> list[QueryRegion]:
    return [QueryRegion(r.query.source(root), negative=r.negative, **r.region.search_arguments(grid))  # type: ignore[arg-type]
            for r in regions]


@dataclass
class SetOutcome:
    result: RegionSetResult
    regions: tuple[SetRegion, ...]
    seconds: float
    region_alone: bool = False  # each region's features were its own, without its photo


def run_region_set(search: FeatureSearch, root: Path, regions: tuple[SetRegion, ...], top_k: int,
                   exclude_query: bool, scales: tuple[float, ...] = (1.0,), region_alone: bool = False) -> SetOutcome:
    """``scales`` other than (1,): each region at those sizes too (every level must be indexed). ``region_alone``:
    each region's features without its photo."""
    started = time.perf_counter()
    result = search.search_regions(query_regions(regions, root, search.grid), top_k=top_k,
                                   exclude_query=exclude_query, scales=scales, region_alone=region_alone)
    return SetOutcome(result, regions, time.perf_counter() - started, region_alone)


def describe_set_search(outcome: SetOutcome, images: int) -> str:
    positives = sum(not r.negative for r in outcome.regions)
    negatives = len(outcome.regions) - positives
    against = f", pushed down by {negatives} negative{'s' * (negatives != 1)}" if negatives else ""
    alone = ", each region alone" if outcome.region_alone else ""
    return (f"Searched {images:,} images for {positives} region{'s' * (positives != 1)}{alone} at once{against} in "
            f"{outcome.seconds * 1000:.0f} ms: an image's score is its mean best-window similarity to the "
            "regions to look for, minus its largest to a negative")


#: What a region set's score-distribution plot names its scores.
SET_SCORE_NAME = "region-set score (mean best-window cosine, minus the nearest negative's)"


@dataclass(frozen=True)
class MatchPart:
    """Where one region of a set was found in a match's image, and how alike that window is."""

    region: SetRegion
    score: float  # the region's best-window cosine in the image
    box: Box  # that window, in the image's pixels
    window: tuple[int, int, int, int]  # (top, left, height, width) on the grid of the scale it was found at
    scale: float = 1.0


def match_parts(outcome: SetOutcome, match: RegionSetMatch, cache: FeatureCache) -> list[MatchPart]:
    """Every region of the set (negatives too) in ``match``'s image: its best window and score, in the set's order."""
    parts = []
    for kept, searched in zip(outcome.regions, outcome.result.regions):
        top, left = (int(v) for v in searched.windows[match.index])
        box, scale = found_window(cache, searched, match.index)
        parts.append(MatchPart(kept, float(searched.scores[match.index]), box, (top, left, *searched.window_shape),
                               scale))
    return parts


def explain_set_score(match: RegionSetMatch, negative: list[bool], negative_weight: float) -> str:
    """``0.412 = mean(0.700, 0.580) − 1 × max(0.228)``: the set's score from the regions' (see region_set)."""
    positives = [f"{score:.3f}" for score, is_negative in zip(match.region_scores, negative) if not is_negative]
    negatives = [f"{score:.3f}" for score, is_negative in zip(match.region_scores, negative) if is_negative]
    text = f"{match.score:.3f} = mean({', '.join(positives)})"
    return text + (f" − {negative_weight:g} × max({', '.join(negatives)})" if negatives else "")


# --- modes -------------------------------------------------------------------------------------


def modes_problem(result: SearchResult) -> str | None:
    """Why the modes of this result are not offered, or None."""
    if int(np.isfinite(result.scores).sum()) < 3:
        return "Too few images were scored to group them into modes."
    return None
