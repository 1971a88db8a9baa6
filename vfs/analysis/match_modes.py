"""The modes of a search's matches: why a region matches, grouped (SpRAy, Lapuschkin et al. 2019).

A region often matches for several distinct reasons (the wheel of a bicycle and the face of a
clock). The top ``n`` matches are described by their matched windows' features (each window
weighted by the query's mask, as the score weights it, then L2-normalised), so two matches are
alike when the model sees the same thing in their windows. Spectral clustering groups them:
the affinity graph links each window to its ``neighbours`` nearest by cosine, weighted by that
cosine (a k-nearest-neighbour graph, as SpRAy builds it: post-ReLU features make every cosine
positive, so a dense cosine affinity hides the groups), the symmetric normalised Laplacian's
eigenvalues choose the number of clusters by their largest gap among the first ``max_modes``
(the eigengap heuristic), and k-means on the row-normalised eigenvectors assigns the clusters
(Ng, Jordan & Weiss, 2001).

A mode's exemplars are its most central matches: the highest mean affinity to the other members.

A region set's results (:mod:`vfs.similarity.region_set`) are described by their windows for every positive
region, side by side (:func:`set_window_descriptors`).

A multi-scale search (:mod:`vfs.similarity.scales`) found each image's window on the grid of a pyramid
level; its descriptor is read from that level's cache. The windows have the query's shape at every
level, so descriptors from different levels compare like those of one grid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.linalg import eigh

from vfs.analysis.subset import top_matches
from vfs.cache.feature_cache import FeatureCache
from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch
from vfs.similarity.exact import Match, SearchResult
from vfs.similarity.ranking import top_k_indices
from vfs.similarity.region_set import RegionSetResult
from vfs.similarity.scales import ScaledSearchResult

DEFAULT_MATCHES = 200
DEFAULT_MAX_MODES = 8
DEFAULT_NEIGHBOURS = 10
EXEMPLARS = 5
_KMEANS_RESTARTS = 10


@dataclass(frozen=True)
class MatchMode:
    members: list[int]  # dataset indices, best score first
    exemplars: list[int]  # the most central members, most central first
    labels: dict[str, int]  # label → members carrying it, most common first

    @property
    def size(self) -> int:
        return len(self.members)

    def to_dict(self, cache: FeatureCache) -> dict:
        return {"size": self.size, "exemplars": [cache.paths[i] for i in self.exemplars], "labels": self.labels}


def _window_rows(cache: FeatureCache, result: SearchResult, images: np.ndarray,
                 levels: Mapping[float, FeatureCache] | None) -> list[tuple[FeatureCache, int]]:
    """Where each image's matched window lies: its cache (the base, or its pyramid level's) and its row there."""
    if not isinstance(result, ScaledSearchResult) or result.image_scales is None:
        return [(cache, int(i)) for i in images]
    located = []
    for i in images:
        scale = float(result.image_scales[i])
        level = cache if scale == 1.0 else (levels or {}).get(scale)
        if level is None:
            raise VfsError(f"The matches found at scale {scale:g} need that pyramid level's cache to be grouped.")
        row = int(i) if level is cache else level.index_of(cache.paths[int(i)])
        if row is None:
            raise VfsError(f"{cache.paths[int(i)]} is not in the cache of scale {scale:g}.")
        located.append((level, row))
    return located


def window_descriptors(cache: FeatureCache, result: SearchResult, images: np.ndarray,
                       levels: Mapping[float, FeatureCache] | None = None) -> np.ndarray:
    """(n, C·h·w) mask-weighted matched windows, L2-normalised (zero windows stay zero).

    ``levels``: the pyramid level caches of a multi-scale ``result``, by scale (scale 1 is ``cache``).
    """
    rows = np.flatnonzero(result.grid_mask.max(axis=1) > 0)
    cols = np.flatnonzero(result.grid_mask.max(axis=0) > 0)
    weights = result.grid_mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1].astype(np.float32)
    h, w = weights.shape
    windows = []
    for i, (source, row) in zip(images, _window_rows(cache, result, images, levels)):
        top, left = (int(v) for v in result.windows[i])
        window = np.asarray(source.features(row))[:, top: top + h, left: left + w].astype(np.float32) * weights
        windows.append(window.ravel())
    descriptors = np.stack(windows) if windows else np.zeros((0, 0), np.float32)
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return descriptors / np.where(norms == 0, 1, norms)


def neighbour_affinity(descriptors: np.ndarray, neighbours: int = DEFAULT_NEIGHBOURS) -> np.ndarray:
    """Symmetric k-nearest-neighbour graph of L2-normalised rows, weighted by cosine (negatives as 0)."""
    n = len(descriptors)
    cosine = np.clip(descriptors @ descriptors.T, 0.0, None).astype(np.float64)
    np.fill_diagonal(cosine, 0.0)
    keep = np.zeros_like(cosine, dtype=bool)
    nearest = np.argsort(-cosine, axis=1, kind="stable")[:, :min(neighbours, max(n - 1, 0))]
    keep[np.arange(n)[:, None], nearest] = True
    return np.where(keep | keep.T, cosine, 0.0)


def spectral_modes(affinity: np.ndarray, max_modes: int = DEFAULT_MAX_MODES, seed: int = 0) -> np.ndarray:
    """Cluster of each item of a symmetric non-negative affinity matrix; the count chosen by the eigengap."""
    n = len(affinity)
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    degree = affinity.sum(axis=1)
    scale = 1 / np.sqrt(np.where(degree > 0, degree, 1))
    laplacian = np.eye(n) - scale[:, None] * affinity * scale[None, :]
    count = min(max_modes, n - 1)
    values, vectors = eigh(laplacian, subset_by_index=[0, count])  # the count + 1 smallest, ascending
    k = int(np.argmax(np.diff(values))) + 1  # the gap after the k-th eigenvalue is the largest
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    embedding = vectors[:, :k]
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(_KMEANS_RESTARTS):
        centroids, assignment = kmeans2(embedding, k, iter=50, minit="++", rng=rng)
        cost = float(((embedding - centroids[assignment]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = assignment, cost
    _, relabelled = np.unique(best, return_inverse=True)  # dense 0..k'-1 (k-means may leave a cluster empty)
    return relabelled.astype(np.int64)


def set_window_descriptors(cache: FeatureCache, result: RegionSetResult, images: np.ndarray,
                           levels: Mapping[float, FeatureCache] | None = None) -> np.ndarray:
    """(n, ·) each image's matched windows for every positive region of a region set, each described as
    :func:`window_descriptors` does, side by side and scaled by 1/√P (P positive regions): unit length, and two
    images are alike as far as they match every positive region alike. Negatives are left out: a result's
    window for a negative region is where it looks least like what is not wanted. ``levels``: as for
    :func:`window_descriptors`, for a set searched at several scales."""
    parts = [window_descriptors(cache, region, images, levels)
             for region, negative in zip(result.regions, result.negative) if not negative]
    return np.hstack(parts) / np.sqrt(len(parts))


def match_modes(cache: FeatureCache, result: SearchResult, n: int = DEFAULT_MATCHES,
                max_modes: int = DEFAULT_MAX_MODES, neighbours: int = DEFAULT_NEIGHBOURS, seed: int = 0,
                levels: Mapping[float, FeatureCache] | None = None) -> list[MatchMode]:
    """The modes of the top ``n`` matches of ``result`` (a search of ``cache``), largest first.

    ``levels``: for a multi-scale ``result``, the cache of each pyramid level it found matches at.
    """
    images = top_k_indices(result.scores, n)
    return _modes(cache, images, window_descriptors(cache, result, images, levels), max_modes, neighbours, seed)


def region_set_modes(cache: FeatureCache, result: RegionSetResult, n: int = DEFAULT_MATCHES,
                     max_modes: int = DEFAULT_MAX_MODES, neighbours: int = DEFAULT_NEIGHBOURS, seed: int = 0,
                     levels: Mapping[float, FeatureCache] | None = None) -> list[MatchMode]:
    """The modes of the top ``n`` results of a region set (by the set's score), largest first."""
    images = top_k_indices(result.scores, n)
    return _modes(cache, images, set_window_descriptors(cache, result, images, levels), max_modes, neighbours, seed)


def _modes(cache: FeatureCache, images: np.ndarray, descriptors: np.ndarray, max_modes: int, neighbours: int,
           seed: int) -> list[MatchMode]:
    """Spectral clusters of ``images`` (best score first) by their window ``descriptors``, largest first."""
    affinity = neighbour_affinity(descriptors, neighbours)
    assignment = spectral_modes(affinity, max_modes, seed)
    modes = []
    for cluster in np.unique(assignment):
        members = np.flatnonzero(assignment == cluster)  # positions in `images`, best score first
        within = np.clip(descriptors[members] @ descriptors[members].T, 0.0, None)
        centrality = (within.sum(axis=1) - np.diag(within)) / max(len(members) - 1, 1)
        central = members[np.argsort(-centrality, kind="stable")][:EXEMPLARS]
        labels = Counter(cache.labels[int(images[m])] or "" for m in members)
        modes.append(MatchMode([int(images[m]) for m in members], [int(images[m]) for m in central],
                               dict(labels.most_common())))
    return sorted(modes, key=lambda mode: -mode.size)


def describe_mode(mode: MatchMode, label_name: Callable[[str], str | None]) -> str:
    """``"42 matches · cat 30, dog 12"``: the mode's size and its label mix (``label_name``: label → shown name)."""
    mix = ", ".join(f"{(label_name(label) or label) if label else 'unlabelled'} {count}"
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


def search_modes(search: FeatureSearch, result: SearchResult | RegionSetResult,
                 n: int = DEFAULT_MATCHES) -> list[MatchMode]:
    """The modes of a search ``search`` ran: of one region, at one scale or several (each level's cache opened
    from ``search``), or of a region set."""
    searches = result.regions if isinstance(result, RegionSetResult) else [result]
    scales = {scale for one in searches if isinstance(one, ScaledSearchResult) and one.level_grids
              for scale in one.level_grids if scale != 1.0}
    levels = {scale: search.scale_level(scale).cache for scale in scales}
    if isinstance(result, RegionSetResult):
        return region_set_modes(search.cache, result, n=n, levels=levels)
    return match_modes(search.cache, result, n=n, levels=levels)
