"""The Search page's queries beyond one region at one size (docs/queries.md): object sizes (scales),
region sets ("like these, not like that") and the modes of the matches. Streamlit-free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfs.analysis.match_modes import MatchMode
from vfs.analysis.subset import top_matches
from vfs.cache.catalog import read_cache
from vfs.cache.feature_cache import FeatureCache
from vfs.dashboard.build_cost import BuildCost, cache_bytes
from vfs.dashboard.query_images import QueryImage
from vfs.feature_search import FeatureSearch, QueryRegion
from vfs.similarity.exact import Match, SearchResult
from vfs.similarity.region import Region
from vfs.similarity.region_set import RegionSetResult
from vfs.similarity.scales import MULTI_SCALES, ScaledSearchResult, scale_level

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


def is_multi_scale(result: object) -> bool:
    """Whether a result's windows lie on several levels' grids (so not on the base grid)."""
    return isinstance(result, ScaledSearchResult)


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


def run_region_set(search: FeatureSearch, root: Path, regions: tuple[SetRegion, ...], top_k: int,
                   exclude_query: bool) -> SetOutcome:
    started = time.perf_counter()
    result = search.search_regions(query_regions(regions, root, search.grid), top_k=top_k,
                                   exclude_query=exclude_query)
    return SetOutcome(result, regions, time.perf_counter() - started)


def describe_set_search(outcome: SetOutcome, images: int) -> str:
    positives = sum(not r.negative for r in outcome.regions)
    negatives = len(outcome.regions) - positives
    against = f", pushed down by {negatives} negative{'s' * (negatives != 1)}" if negatives else ""
    return (f"Searched {images:,} images for {positives} region{'s' * (positives != 1)} at once{against} in "
            f"{outcome.seconds * 1000:.0f} ms: an image's score is its mean best-window similarity to the "
            "regions to look for, minus its largest to a negative")


# --- modes -------------------------------------------------------------------------------------


def modes_problem(result: SearchResult) -> str | None:
    """Why the modes of this result are not offered, or None."""
    if is_multi_scale(result):
        return "Modes compare matched windows on one grid: search with Object size \"as drawn\" to see them."
    if int(np.isfinite(result.scores).sum()) < 3:
        return "Too few images were scored to group them into modes."
    return None


def describe_mode(mode: MatchMode, label_name: object) -> str:
    """``"42 matches · cat 30, dog 12"``: the mode's size and its label mix (``label_name``: label → shown name)."""
    mix = ", ".join(f"{(label_name(label) or label) if label else 'unlabelled'} {count}"  # type: ignore[operator]
                    for label, count in list(mode.labels.items())[:4])
    more = f", {len(mode.labels) - 4} more labels" if len(mode.labels) > 4 else ""
    return f"{mode.size} matches · {mix}{more}" if mix else f"{mode.size} matches"


def mode_rows(mode: MatchMode, images: int) -> np.ndarray:
    """Boolean mask over the cache's images of the mode's members."""
    rows = np.zeros(images, dtype=bool)
    rows[np.asarray(mode.members, dtype=np.int64)] = True
    return rows


def exemplar_matches(mode: MatchMode, result: SearchResult, cache: FeatureCache) -> list[Match]:
    """The mode's exemplars as matches of ``result``, best score first, with their windows."""
    exemplars = np.zeros(len(cache), dtype=bool)
    exemplars[np.asarray(mode.exemplars, dtype=np.int64)] = True
    return top_matches(result, cache, exemplars, len(mode.exemplars))
