"""An overview of a whole dataset, after DendroMap (Bertucci et al., 2022): hierarchical clusters.

Each image is summarised by its pooled feature vector (the mean of its cached grid over the
cells, L2-normalised, so Euclidean distance orders pairs as cosine similarity does). Ward's
agglomerative clustering (scipy) builds one tree over them; cutting it at a few cluster counts
gives nested levels, each cluster of a level lying inside one cluster of the level above. Ward
needs every pairwise distance, so beyond :data:`LINKAGE_LIMIT` images the tree is built over
k-means micro-clusters (scikit-learn) and each image follows its micro-cluster.

A cluster's most central images are those closest (cosine) to the mean of its members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from vfs.analysis.labels import label_vote
from vfs.analysis.subset import Subset
from vfs.cache.feature_cache import FeatureCache

#: Exact Ward linkage up to this many images (its distance matrix: 8·n²/2 bytes, 100 MB at 5,000).
LINKAGE_LIMIT = 5000
#: Micro-clusters the tree is built over for larger datasets.
MICRO_CLUSTERS = 2000
#: Images pooled per step: bounds the float32 copy of a shard's features.
_POOL_ROWS = 256
ROOT = "all"


def pooled_features(cache: FeatureCache) -> np.ndarray:
    """(N, C) float32: each image's feature grid averaged over its cells, L2-normalised."""
    pooled = np.empty((len(cache), cache.channels), dtype=np.float32)
    for shard in cache.shards:
        for start in range(0, len(shard.features), _POOL_ROWS):
            block = shard.features[start: start + _POOL_ROWS]
            pooled[shard.offset + start: shard.offset + start + len(block)] = block.mean(axis=(2, 3), dtype=np.float32)
    return _normalised(pooled)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def nested_assignments(features: np.ndarray, levels: Sequence[int], seed: int = 0,
                       linkage_limit: int = LINKAGE_LIMIT, micro_clusters: int = MICRO_CLUSTERS) -> np.ndarray:
    """(N, len(levels)) cluster numbers: column l cuts the Ward tree into at most ``levels[l]`` clusters.

    ``levels`` must increase; each column's clusters nest inside the previous column's. ``seed``
    fixes the micro-clusters of datasets larger than ``linkage_limit``.
    """
    if list(levels) != sorted(set(levels)) or not levels or levels[0] < 1:
        raise ValueError(f"levels must be increasing positive cluster counts, got {list(levels)}")
    n = len(features)
    if n < 2:
        return np.ones((n, len(levels)), dtype=np.int64)
    points, owner = features, np.arange(n)
    if n > linkage_limit:
        from sklearn.cluster import MiniBatchKMeans

        kmeans = MiniBatchKMeans(n_clusters=min(micro_clusters, n), n_init=1, random_state=seed,
                                 batch_size=4096).fit(features)
        points, owner = _normalised(kmeans.cluster_centers_.astype(np.float64)), kmeans.labels_
    from scipy.cluster.hierarchy import fcluster, linkage  # here: the dashboard's other pages never need scipy

    tree = linkage(np.asarray(points, dtype=np.float64), method="ward")
    cuts = np.stack([fcluster(tree, t=min(k, len(points)), criterion="maxclust") for k in levels], axis=1)
    return cuts[owner].astype(np.int64)


def central_rows(features: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` of ``rows`` closest (cosine) to their mean, closest first, ties by row."""
    members = features[rows]
    centre = members.mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    similarity = members.astype(np.float64) @ centre
    return rows[np.lexsort((rows, -similarity))][:count]


@dataclass(frozen=True)
class Cluster:
    id: str  # "3", "3.1", ...; the root is ROOT
    parent: str  # "" for the root
    level: int  # 0 for the root
    rows: np.ndarray  # member images, ascending
    central: np.ndarray  # the most central members, closest first
    vote: tuple[tuple[str, int], ...]  # labels of the members, most common first (empty without labels)

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def title(self) -> str:
        if self.id == ROOT:
            return "All images"
        name = f"Cluster {self.id}"
        if not self.vote:
            return name
        label, count = self.vote[0]
        # "415 n03425413 of 1741" read as a count of a count: say what each number counts
        return f"{name} · {label}" if count == self.size else f"{name} · {count:,} labelled {label} (of {self.size:,})"


@dataclass(frozen=True)
class DatasetMap:
    clusters: list[Cluster]  # the root, then depth first: each cluster before its children, largest first
    paths: list[str]
    labels: list[str | None]

    @cached_property
    def _by_id(self) -> dict[str, Cluster]:
        return {cluster.id: cluster for cluster in self.clusters}

    def cluster(self, cluster_id: str) -> Cluster:
        return self._by_id[cluster_id]

    def children(self, cluster_id: str) -> list[Cluster]:
        return [cluster for cluster in self.clusters if cluster.parent == cluster_id]

    def leaves(self) -> list[Cluster]:
        parents = {cluster.parent for cluster in self.clusters}
        return [cluster for cluster in self.clusters if cluster.id not in parents]

    def rows_of(self, paths: Sequence[str]) -> np.ndarray:
        """The rows of those ``paths`` that are in the map."""
        index = {path: row for row, path in enumerate(self.paths)}
        return np.array(sorted(index[p] for p in paths if p in index), dtype=np.int64)

    def subset(self, cluster_id: str, root: Path) -> Subset:
        """A cluster's images as a filter of the dataset at ``root``."""
        rows = self.cluster(cluster_id).rows
        return Subset(root, f"cluster {cluster_id}", frozenset(self.paths[row] for row in rows))

    def cluster_holding_exactly(self, subset: Subset) -> str:
        """The cluster whose images are ``subset``'s (e.g. a filter chosen earlier); the root when none is."""
        return next((cluster.id for cluster in self.clusters if cluster.id != ROOT and cluster.size == len(subset.paths)
                     and self.subset(cluster.id, subset.root) == subset), ROOT)

    def hits(self, rows: np.ndarray) -> dict[str, int]:
        """How many of ``rows`` (e.g. a search's top-k) each cluster holds."""
        marked = np.zeros(len(self.paths), dtype=bool)
        marked[np.asarray(rows, dtype=np.int64)] = True
        return {cluster.id: int(marked[cluster.rows].sum()) for cluster in self.clusters}


def build_map(features: np.ndarray, paths: Sequence[str], labels: Sequence[str | None], levels: Sequence[int] = (6, 24),
              central: int = 6, seed: int = 0, linkage_limit: int = LINKAGE_LIMIT) -> DatasetMap:
    """The cluster tree of pooled ``features`` (one row per path), ``len(levels)`` levels deep.

    Where a level would leave a cluster whole, its children come from the next level that splits it.
    """
    if len(features) != len(paths) or len(paths) != len(labels):
        raise ValueError(f"{len(features)} feature rows for {len(paths)} paths and {len(labels)} labels.")
    assignments = nested_assignments(features, levels, seed, linkage_limit)
    labelled = any(label is not None for label in labels)
    clusters: list[Cluster] = []

    def add(cluster_id: str, parent: str, depth: int, rows: np.ndarray, column: int) -> None:
        vote = tuple(label_vote([labels[row] for row in rows])) if labelled else ()
        clusters.append(Cluster(cluster_id, parent, depth, rows, central_rows(features, rows, central), vote))
        for level in range(column, len(levels)):  # the first level that splits these rows
            numbers = assignments[rows, level]
            parts = [rows[numbers == number] for number in np.unique(numbers)]
            if len(parts) > 1:
                for position, part in enumerate(sorted(parts, key=lambda p: (-len(p), int(p[0]))), start=1):
                    child = f"{cluster_id}.{position}" if depth else str(position)
                    add(child, cluster_id, depth + 1, part, level + 1)
                return

    add(ROOT, "", 0, np.arange(len(paths)), 0)
    return DatasetMap(clusters, list(paths), list(labels))


def dataset_map(cache: FeatureCache, levels: Sequence[int] = (6, 24), central: int = 6, seed: int = 0,
                labels: Sequence[str | None] | None = None) -> DatasetMap:
    """The map of every image in ``cache``; ``labels`` (e.g. readable names, in cache order) replace the cache's."""
    return build_map(pooled_features(cache), cache.paths, cache.labels if labels is None else labels, levels, central,
                     seed)


def clicked_cluster(event: Mapping | None) -> str | None:
    """The cluster id a treemap click names, in Streamlit's selection event (``{"selection": {"points": [...]}}``)."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    return str(points[0]["id"]) if points and points[0].get("id") else None
