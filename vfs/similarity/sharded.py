"""Sharded exact search: a cache's shards scanned in parallel, by threads or by Ray actors.

Each shard is scanned on its own by an ordinary backend (``torch-cpu`` unless told otherwise)
and its best windows are written at the shard's offset, so the arrays :func:`vfs.similarity.exact.search`
ranks are the ones a single scan of the whole cache gives: every image's score depends only on
its own features, and the ranking (score, then dataset order, then top-left window) is the same.

* ``sharded``: a thread pool over the shards of a memory-mapped cache (the scans release the
  GIL). It helps where one scan cannot use the machine: shards on several disks or on network
  storage, or a backend that runs on one thread.
* ``ray-sharded``: Ray actors, one or more per node, each memory-mapping the shards it was given
  and keeping them mapped between queries. A shard goes to an actor on a node where its file is
  present (size as in the manifest), so with shards spread over the local disks of several
  machines each is scanned where it lies; with a shared filesystem the shards are balanced by
  rows. Per query, an actor returns 12 bytes per image (score and window).

Both are registered in :mod:`vfs.similarity.exact` by name, and this module is imported when one of them
is first asked for (``get_backend("sharded")``).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from vfs.cache.feature_cache import MANIFEST, CacheSpec, FeatureCache, ShardRecord, _MappedShard, map_shard
from vfs.errors import CacheError, VfsError
from vfs.similarity.exact import Query, SimilarityBackend, get_backend


def shard_cache(spec: CacheSpec, shard: _MappedShard) -> FeatureCache:
    """One shard as a cache of its own (rows from 0), enough for a backend's ``best_windows``."""
    n = len(shard.features)
    local = _MappedShard(0, shard.features, shard.cell_norms2, shard._keepalive)
    return FeatureCache(Path(), spec, None, [local], [""] * n, [None] * n, np.zeros((n, 2), np.int64),
                        shard.features.nbytes + shard.cell_norms2.nbytes)


class ShardedBackend(SimilarityBackend):
    """Scans the shards of a cache in ``threads`` parallel threads with the ``inner`` backend."""

    def __init__(self, inner: SimilarityBackend | str = "torch-cpu", threads: int = 2):
        self.inner = get_backend(inner) if isinstance(inner, str) else inner
        self.threads = max(1, threads)
        self.name = f"sharded-{self.inner.name}"

    def window_scores(self, features: np.ndarray, cell_norms2: np.ndarray, query: Query) -> np.ndarray:
        return self.inner.window_scores(features, cell_norms2, query)

    def best_windows(self, cache: FeatureCache, query: Query) -> tuple[np.ndarray, np.ndarray]:
        scores = np.empty(len(cache), np.float32)
        flat = np.empty(len(cache), np.int64)

        def scan(shard: _MappedShard) -> None:
            best, where = self.inner.best_windows(shard_cache(cache.spec, shard), query)
            scores[shard.offset: shard.offset + len(best)] = best
            flat[shard.offset: shard.offset + len(best)] = where

        with ThreadPoolExecutor(self.threads, thread_name_prefix="vfs-shard") as pool:
            list(pool.map(scan, cache.shards))  # list(): re-raises a scan's exception here
        return scores, flat


def _manifest(path: Path) -> tuple[CacheSpec, list[ShardRecord]]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return CacheSpec.from_json(json.dumps(manifest["spec"])), [ShardRecord(**r) for r in manifest["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{path / MANIFEST} is unreadable ({exc}); rerun `vfs index`.") from None


class _ShardScanner:
    """A Ray actor on one node: scans the shards it was given, kept memory-mapped between queries."""

    def __init__(self, inner: str):
        self.inner = get_backend(inner)
        self.caches: list[tuple[int, FeatureCache]] = []

    def present(self, cache_dir: str, records: list[dict[str, Any]]) -> list[str]:
        """The shard files of ``records`` that this node holds, at their manifest size."""
        folder = Path(cache_dir)
        return [r["file"] for r in records if (folder / r["file"]).is_file()
                and (folder / r["file"]).stat().st_size == r["bytes"]]

    def load(self, cache_dir: str, spec_json: str, shards: list[tuple[str, int]]) -> int:
        spec = CacheSpec.from_json(spec_json)
        self.caches = []
        for file, offset in shards:
            shard, _ = map_shard(Path(cache_dir) / file, spec, offset)
            self.caches.append((offset, shard_cache(spec, shard)))
        return sum(len(c) for _, c in self.caches)

    def scan(self, query: Query) -> list[tuple[int, np.ndarray, np.ndarray]]:
        return [(offset, *self.inner.best_windows(c, query)) for offset, c in self.caches]


class RayShardedBackend(SimilarityBackend):
    """Scans a cache's shards on Ray actors placed on the nodes that hold the shard files.

    Joins the Ray cluster at ``address`` (or the running one, or starts a local Ray). The actors
    and their placement are kept for the cache last searched and redone when its manifest changes.
    """

    def __init__(self, actors_per_node: int = 1, inner: str = "torch-cpu", address: str | None = None,
                 cpus_per_actor: float = 1.0):
        try:
            import ray
        except ImportError:
            raise VfsError("The ray-sharded backend needs Ray: pip install 'vfs[ray]'") from None
        self._ray = ray
        self.actors_per_node = max(1, actors_per_node)
        self.inner = inner
        self.address = address
        self.cpus_per_actor = cpus_per_actor
        self.name = f"ray-sharded-{inner}"
        self._actors: list[Any] = []
        self._placed: tuple[str, str] | None = None  # (cache folder, manifest text) the actors hold
        self.rows_per_actor: list[int] = []
        self._lock = threading.Lock()

    def window_scores(self, features: np.ndarray, cell_norms2: np.ndarray, query: Query) -> np.ndarray:
        return get_backend(self.inner).window_scores(features, cell_norms2, query)

    def _start_actors(self) -> list[Any]:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False)
        scanner = ray.remote(_ShardScanner)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        return [scanner.options(num_cpus=self.cpus_per_actor,
                                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(self.inner)
                for node in nodes for _ in range(self.actors_per_node)]

    def _place(self, cache: FeatureCache) -> None:
        """Give every shard to the least-loaded actor whose node holds its file."""
        ray = self._ray
        manifest_text = (cache.path / MANIFEST).read_text()
        if self._placed == (str(cache.path), manifest_text):
            return
        if not self._actors:
            self._actors = self._start_actors()
        spec, records = _manifest(cache.path)
        plain = [{"file": r.file, "bytes": r.bytes} for r in records]
        present = ray.get([a.present.remote(str(cache.path), plain) for a in self._actors])
        if sum(r.rows for r in records) != len(cache):
            raise CacheError(f"{cache.path} changed since it was opened; open it again.")
        starts = np.cumsum([0] + [r.rows for r in records])
        load = [0] * len(self._actors)
        assigned: list[list[tuple[str, int]]] = [[] for _ in self._actors]
        for i in sorted(range(len(records)), key=lambda i: -records[i].rows):  # biggest first balances best
            if records[i].rows == 0:
                continue
            holders = [a for a, files in enumerate(present) if records[i].file in files]
            if not holders:
                raise CacheError(f"No Ray node holds {cache.path / records[i].file}.")
            chosen = min(holders, key=lambda a: (load[a], a))
            assigned[chosen].append((records[i].file, int(starts[i])))
            load[chosen] += records[i].rows
        self.rows_per_actor = ray.get([a.load.remote(str(cache.path), spec.to_json(), shards)
                                       for a, shards in zip(self._actors, assigned)])
        self._placed = (str(cache.path), manifest_text)

    def best_windows(self, cache: FeatureCache, query: Query) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._place(cache)
            parts = self._ray.get([a.scan.remote(query) for a in self._actors])
        scores = np.empty(len(cache), np.float32)
        flat = np.empty(len(cache), np.int64)
        for offset, best, where in (part for actor_parts in parts for part in actor_parts):
            scores[offset: offset + len(best)] = best
            flat[offset: offset + len(best)] = where
        return scores, flat

    def close(self) -> None:
        """Stop the actors (Ray itself keeps running)."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._placed, self.rows_per_actor = [], None, []


@cache
def shared_ray_backend() -> RayShardedBackend:
    """The ``ray-sharded`` registry entry: one set of actors for every search that names the backend."""
    return RayShardedBackend()
