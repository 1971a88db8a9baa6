"""A search from the dashboard: running it, describing it, and the window scores behind its heatmaps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from vfs.analysis.units import region_query
from vfs.cache.feature_cache import cell_norms2
from vfs.dashboard.query_images import QueryImage
from vfs.dashboard.safe_text import hide_paths
from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch
from vfs.similarity.exact import Match, SearchResult, get_backend
from vfs.similarity.region import Region

#: The smallest cache the Search page offers approximate search for. Measured on 2 CPU cores
#: (bench/RESULTS.md, ``python -m bench.scale search``): at 3,925 and 62,500 images the shortlist
#: was 0.6–1.8× the exact scan's speed (slower for most regions), at 250,000 it won for every region
#: (2.5–4.8×), at 1,000,000 by 10–23×. Below this the exact scan is at least as fast and misses nothing.
APPROXIMATE_FROM = 250_000


@dataclass
class SearchOutcome:
    result: SearchResult
    query: QueryImage
    region: Region
    seconds: float  # query features plus search
    region_alone: bool = False  # the region's features were its own, without its photo


@dataclass
class ShownSearch:
    """A search with what displays it, kept so reruns that do not change it cost nothing."""

    key: tuple  # what the search depends on, k last
    outcome: SearchOutcome
    number: int  # searches run in this session; names the gallery
    thumbnails: list[bytes]
    figure: go.Figure | None = None  # built after the gallery is on its way to the browser
    filters: tuple[str, ...] = ()  # what the gallery is filtered to ("label: dress"), named in its caption

    @property
    def without_k(self) -> tuple:
        """The search but its k: the same top matches' modes whatever k is."""
        return self.key[:-1]


def run_search(search: FeatureSearch, root: Path, query: QueryImage, region: Region, top_k: int,
               exclude_query: bool, approximate: bool = False, scales: tuple[float, ...] = (1.0,),
               region_alone: bool = False) -> SearchOutcome:
    """``scales`` other than (1,): objects of those sizes too (every level must be indexed; exact search only).
    ``region_alone``: the region's features without its photo (:mod:`vfs.features.region_alone`)."""
    started = time.perf_counter()
    sizes = {} if scales == (1.0,) else {"scales": scales}
    result = search.search(query.source(root), top_k=top_k, exclude_query=exclude_query,
                           approximate=approximate and not sizes, region_alone=region_alone, **sizes,
                           **region.search_arguments(search.grid))  # type: ignore[arg-type]
    return SearchOutcome(result, query, region, time.perf_counter() - started, region_alone)


def describe_search(outcome: SearchOutcome, images: int) -> str:
    """What was searched and how long it took; an approximate search says so."""
    result = outcome.result
    scope = (f"Approximate: {result.candidates:,} shortlisted of {images:,} images scored exactly"
             if result.approximate else f"Searched {images:,} images")
    return (f"{scope} in {result.seconds * 1000:.0f} ms ({outcome.seconds * 1000:.0f} ms with the query's features, "
            f"{result.backend}) · window {result.window_shape[0]}×{result.window_shape[1]} cells"
            + (" · the region alone, without its photo" if outcome.region_alone else ""))


def approximate_problem(search: FeatureSearch) -> str | None:
    """Why the Search page does not offer approximate search for this cache (too small to win, no
    usable shortlist), or None."""
    if len(search.cache) < APPROXIMATE_FROM:
        return (f"the exact scan is as fast below {APPROXIMATE_FROM:,} images (this cache holds "
                f"{len(search.cache):,}), so it searches exactly.")
    return shortlist_problem(search)


def window_region(match: Match, grid: int) -> Region:
    """The match's window as a region on the ``grid``×``grid`` cells, to search again from that image."""
    top, left, height, width = match.window
    mask = np.zeros((grid, grid), dtype=np.float32)
    mask[top:top + height, left:left + width] = 1.0
    return Region(grid_mask=mask)


def shortlist_problem(search: FeatureSearch) -> str | None:
    """Why the cache cannot be searched approximately (no shortlist, out of date, no FAISS), or None."""
    try:
        search.shortlist  # noqa: B018 - opened once, here, so the first approximate search is quick
    except VfsError as exc:
        return hide_paths(str(exc), {search.cache.path: "the feature cache"})  # visitors see this
    return None


def window_heatmap(search: FeatureSearch, root: Path, query: QueryImage, region: Region, index: int,
                   region_alone: bool = False) -> np.ndarray:
    """The score of every window position in dataset image ``index``, (G-h+1, G-w+1)."""
    grid_query = region_query(search, query.source(root), region, region_alone)
    candidate = np.asarray(search.cache.features(index))[None]
    backend = get_backend(search.backend) if isinstance(search.backend, str) else search.backend
    return backend.window_scores(candidate, cell_norms2(candidate), grid_query)[0]
