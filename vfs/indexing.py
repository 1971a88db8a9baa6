"""Building and updating feature caches: decode in threads, extract in batches, write shards.

Images are processed in path order and cut into shards of :data:`SHARD_IMAGES` images. Only
images that are new or changed (size or mtime) are extracted; rows of removed or changed images
are dropped. A run killed at any point resumes from its last completed shard and, because the
pending images and shard boundaries are the same, ends with the same rows as an uninterrupted run.

Extraction itself is an :class:`ExtractionEngine`, picked by name from a registry: ``local``
(threads and the model in this process) or ``ray`` (Ray Data actors across a cluster, see
:mod:`vfs.ray_engine`). Every engine receives the same pending list and returns results in its
order; shards are cut and written here, on the driver, so the files, the manifest and crash
safety do not depend on the engine.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vfs.cache import CacheSpec, ShardRows, ShardStore, cache_path, locked
from vfs.errors import DatasetError, ImageError, VfsError
from vfs.images import DEFAULT_MAX_PIXELS, ImageEntry, Skipped
from vfs.models import FeatureModel, LayerInfo, ModelCard
from vfs.sources import DatasetSource

SHARD_IMAGES = 512
DEFAULT_CACHE_DIR = Path("data/cache")


def cache_spec(model: FeatureModel | ModelCard, layer: LayerInfo, grid: int | None = None) -> CacheSpec:
    grid = grid or layer.default_grid
    if grid < 1:
        raise ValueError(f"grid must be at least 1, got {grid}")
    return CacheSpec(model=model.name, weights=model.weights, fingerprint=model.fingerprint, layer=layer.name,
                     preprocessing=model.preprocessing.to_dict(), grid=grid, channels=layer.channels,
                     untrained=model.untrained)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.images_per_second
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass
class IndexSummary:
    cache_dir: Path
    cache_files: list[str]
    images: int  # rows in the cache after the run
    indexed: int  # extracted in this run
    unchanged: int
    removed: int
    skipped: list[Skipped] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # cache problems found and rebuilt
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"cache_dir": str(self.cache_dir), "cache_files": self.cache_files, "images": self.images,
                "indexed": self.indexed, "unchanged": self.unchanged, "removed": self.removed,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "repaired": self.repaired, "seconds": round(self.seconds, 3),
                "images_per_second": round(self.images_per_second, 2), "cancelled": self.cancelled}


@dataclass(frozen=True)
class Extracted:
    """One image's pooled grid and original size."""

    features: np.ndarray  # (C, G, G) float16
    width: int
    height: int


@dataclass(frozen=True)
class ExtractionJob:
    """The images one build extracts, in the order their rows are written."""

    source: DatasetSource
    entries: list[ImageEntry]
    model: FeatureModel
    layer: LayerInfo
    grid: int
    batch_size: int
    shard_images: int  # entries per shard: no model batch spans two shards
    max_pixels: int

    def batches(self) -> Iterator[tuple[int, int]]:
        """``[start, stop)`` ranges of at most ``batch_size`` entries, cut at every shard boundary."""
        for shard_start in range(0, len(self.entries), self.shard_images):
            shard_stop = min(shard_start + self.shard_images, len(self.entries))
            for start in range(shard_start, shard_stop, self.batch_size):
                yield start, min(start + self.batch_size, shard_stop)


class ExtractionEngine(ABC):
    """Turns an :class:`ExtractionJob` into features; where and how it computes is its own affair."""

    name: str = ""

    @abstractmethod
    def extract(self, job: ExtractionJob) -> Generator[tuple[ImageEntry, Extracted | ImageError], None, None]:
        """Every entry of ``job.entries`` exactly once, in order, with its features or why it failed.

        Each shard's images are extracted in batches that do not reach into the next shard, so a
        build resumed from its last complete shard computes every later shard as an
        uninterrupted build does.
        """


def _decode(source: DatasetSource, entry: ImageEntry, model: FeatureModel,
            max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One image decoded and preprocessed, (H, W, 3): the batch is assembled channels-last (Preprocessing.batch)."""
    image = source.load(entry.path, max_pixels=max_pixels)
    return model.preprocessing.normalised(image), image.size


def _decoded(source: DatasetSource, entries: list[ImageEntry], model: FeatureModel, workers: int, max_pixels: int,
             ahead: int) -> Iterator[tuple[ImageEntry, Any]]:
    """Decode ``entries`` in worker threads, ``ahead`` at most in flight, yielding in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vfs-decode") as pool:
        pending: deque[tuple[ImageEntry, Future]] = deque()
        iterator = iter(entries)
        for entry in iterator:
            pending.append((entry, pool.submit(_decode, source, entry, model, max_pixels)))
            if len(pending) >= ahead:
                break
        while pending:
            entry, future = pending.popleft()
            nxt = next(iterator, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode, source, nxt, model, max_pixels)))
            try:
                yield entry, future.result()
            except ImageError as exc:
                yield entry, exc


class LocalEngine(ExtractionEngine):
    """Decoding in ``workers`` threads, the model in this process (on its device)."""

    name = "local"

    def __init__(self, workers: int = 2):
        self.workers = workers

    def extract(self, job: ExtractionJob) -> Generator[tuple[ImageEntry, Extracted | ImageError], None, None]:
        waiting: list[tuple[ImageEntry, Any]] = []  # decoded or failed, in order, until their batch runs
        decoded = 0

        def run_batch() -> list[tuple[ImageEntry, Extracted | ImageError]]:
            images = [result for _, result in waiting if not isinstance(result, ImageError)]
            grids: Iterator[np.ndarray] = iter(())
            if images:
                batch = job.model.preprocessing.batch([pixels for pixels, _ in images])
                grids = iter(job.model.grid_features(batch, job.layer, job.grid).numpy().astype(np.float16))
            done = [(entry, result if isinstance(result, ImageError) else Extracted(next(grids), *result[1]))
                    for entry, result in waiting]
            waiting.clear()
            return done

        stream = _decoded(job.source, job.entries, job.model, self.workers, job.max_pixels, ahead=2 * job.batch_size)
        for position, (entry, result) in enumerate(stream, start=1):
            waiting.append((entry, result))
            decoded += not isinstance(result, ImageError)
            if decoded == job.batch_size or position % job.shard_images == 0 or position == len(job.entries):
                yield from run_batch()
                decoded = 0


_ENGINES: dict[str, Callable[..., ExtractionEngine]] = {}


def register_engine(name: str, factory: Callable[..., ExtractionEngine]) -> None:
    """``factory(workers=..., **options)`` makes the engine; ``workers`` is its parallelism."""
    _ENGINES[name] = factory


def list_engines() -> list[str]:
    return list(_ENGINES)


def get_engine(name: str = "local", **options: Any) -> ExtractionEngine:
    if name not in _ENGINES:
        raise VfsError(f"Unknown indexing engine {name!r}; available: {', '.join(_ENGINES)}")
    return _ENGINES[name](**options)


def _ray_engine(**options: Any) -> ExtractionEngine:
    from vfs.ray_engine import RayEngine  # Ray is an optional extra, imported only when asked for

    return RayEngine(**options)


register_engine("local", LocalEngine)
register_engine("ray", _ray_engine)


def build_index(data: str | Path, model: FeatureModel, layer: str | LayerInfo, grid: int | None = None,
                cache_dir: str | Path = DEFAULT_CACHE_DIR, batch_size: int = 32, workers: int = 2,
                progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS, shard_images: int = SHARD_IMAGES,
                engine: str | ExtractionEngine = "local") -> IndexSummary:
    """Create or update the cache of ``layer`` features for every image under ``data``.

    ``data`` is a folder or a ``pyarrow.fs`` URI (``s3://bucket/photos``). ``shard_images``
    images make one shard: the unit of work a killed run resumes from. ``engine`` is a registered
    engine name (made with ``workers``) or an engine object.
    """
    started = time.perf_counter()
    source = DatasetSource.open(data)
    entries, scan_skipped = source.scan()
    if not entries:
        raise DatasetError(f"No images found in {source.location} "
                           f"(looked for JPEG, PNG, WebP, BMP, TIFF and GIF files).")
    info = model.layer(layer) if isinstance(layer, str) else layer
    spec = cache_spec(model, info, grid)
    directory = cache_path(cache_dir, source.location, spec)
    extractor = get_engine(engine, workers=workers) if isinstance(engine, str) else engine
    with locked(directory):
        store = ShardStore.open(directory, spec)
        known = store.known()
        current = {e.path: e for e in entries}
        stale = {p for p, version in known.items()
                 if p not in current or version != (current[p].size, current[p].mtime_ns)}
        removed = store.remove(stale) if stale else 0
        pending = [e for e in entries if e.path not in known or e.path in stale]
        summary = IndexSummary(directory, [], 0, 0, len(entries) - len(pending), removed,
                               list(scan_skipped), list(store.problems))
        job = ExtractionJob(source, pending, model, info, spec.grid, batch_size, shard_images, max_pixels)
        results = extractor.extract(job)
        try:
            rows, skipped = ShardRows(), []
            for position, (entry, result) in enumerate(results, start=1):
                if cancel is not None and cancel.is_set():
                    summary.cancelled = True
                    break
                if isinstance(result, ImageError):
                    skipped.append({"path": entry.path, "size": entry.size, "mtime_ns": entry.mtime_ns,
                                    "reason": str(result).removeprefix(f"{source.describe(entry.path)}: ")})
                else:
                    rows.paths.append(entry.path)
                    rows.labels.append(entry.label)
                    rows.widths.append(result.width)
                    rows.heights.append(result.height)
                    rows.file_sizes.append(entry.size)
                    rows.mtimes.append(entry.mtime_ns)
                    rows.features.append(result.features)
                shard_done = position % shard_images == 0 or position == len(pending)
                if shard_done:
                    store.append(rows, skipped)
                    summary.indexed += len(rows)
                    rows, skipped = ShardRows(), []
                if progress is not None and (shard_done or position % batch_size == 0):
                    progress(Progress(position, len(pending), time.perf_counter() - started))
        finally:
            results.close()  # stops the engine's workers when the loop ends early
            summary.skipped += [Skipped(s["path"], s["reason"]) for s in store.skipped()]
            summary.cache_files = [str(directory / r.file) for r in store.shards]
            summary.images = sum(r.rows for r in store.shards)
            summary.seconds = time.perf_counter() - started
    return summary
