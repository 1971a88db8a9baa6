"""Building and updating feature caches: decode in threads, extract in batches, write shards.

Images are processed in path order and cut into shards of :data:`SHARD_IMAGES` images. Only
images that are new or changed (size or mtime) are extracted; rows of removed or changed images
are dropped. A run killed at any point resumes from its last completed shard and, because the
pending images and shard boundaries are the same, ends with the same rows as an uninterrupted run.
A cancelled run writes the images it finished as a shorter shard, so cancelling loses no work.

Extraction itself is an engine of :mod:`vfs.features.extraction` (``local`` or ``ray``), picked
by name. Every engine receives the same pending list and returns results in its order; shards
are cut and written here, on the driver, so the files, the manifest and crash safety do not
depend on the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfs.cache.feature_cache import CacheSpec, ShardRows, ShardStore, cache_path, locked
from vfs.errors import DatasetError, ImageError
from vfs.features.extraction import ExtractionEngine, ExtractionJob, get_engine
from vfs.features.images import DEFAULT_MAX_PIXELS, Skipped
from vfs.features.models import FeatureModel, LayerInfo, ModelCard
from vfs.features.sources import DatasetSource

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
                    # a cancelled build keeps what it finished: the partial shard is written too (a later build
                    # resumes after it; only a killed build, which cannot write, loses its unfinished shard)
                    if rows.paths or skipped:
                        store.append(rows, skipped)
                        summary.indexed += len(rows)
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
