"""Building and updating feature caches: decode in threads, extract in batches, write shards.

Images are processed in path order and cut into shards of :data:`SHARD_IMAGES` images. Only
images that are new or changed (size or mtime) are extracted; rows of removed or changed images
are dropped. A run killed at any point resumes from its last completed shard and, because the
pending images and shard boundaries are the same, ends with the same rows as an uninterrupted run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfs.cache import CacheSpec, ShardRows, ShardStore, cache_path, locked
from vfs.errors import DatasetError, ImageError
from vfs.images import DEFAULT_MAX_PIXELS, ImageEntry, Skipped, load_image, scan_images
from vfs.models import FeatureModel, LayerInfo

SHARD_IMAGES = 512
DEFAULT_CACHE_DIR = Path("data/cache")


def cache_spec(model: FeatureModel, layer: LayerInfo, grid: int | None = None) -> CacheSpec:
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


def _decode(root: Path, entry: ImageEntry, model: FeatureModel, max_pixels: int) -> tuple[torch.Tensor, tuple[int, int]]:
    image = load_image(root / entry.path, max_pixels=max_pixels)
    return model.preprocessing(image), image.size


def _decoded(root: Path, entries: list[ImageEntry], model: FeatureModel, workers: int, max_pixels: int,
             ahead: int) -> Iterator[tuple[ImageEntry, Any]]:
    """Decode ``entries`` in worker threads, ``ahead`` at most in flight, yielding in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vfs-decode") as pool:
        pending: deque[tuple[ImageEntry, Future]] = deque()
        iterator = iter(entries)
        for entry in iterator:
            pending.append((entry, pool.submit(_decode, root, entry, model, max_pixels)))
            if len(pending) >= ahead:
                break
        while pending:
            entry, future = pending.popleft()
            nxt = next(iterator, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode, root, nxt, model, max_pixels)))
            try:
                yield entry, future.result()
            except ImageError as exc:
                yield entry, exc


def build_index(data: str | Path, model: FeatureModel, layer: str | LayerInfo, grid: int | None = None,
                cache_dir: str | Path = DEFAULT_CACHE_DIR, batch_size: int = 32, workers: int = 2,
                progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS, shard_images: int = SHARD_IMAGES) -> IndexSummary:
    """Create or update the cache of ``layer`` features for every image under ``data``.

    ``shard_images`` images make one shard: the unit of work a killed run resumes from.
    """
    started = time.perf_counter()
    root = Path(data).expanduser()
    entries, scan_skipped = scan_images(root)
    if not entries:
        raise DatasetError(f"No images found in {root} (looked for JPEG, PNG, WebP, BMP, TIFF and GIF files).")
    info = model.layer(layer) if isinstance(layer, str) else layer
    spec = cache_spec(model, info, grid)
    directory = cache_path(cache_dir, root, spec)
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
        done = 0
        try:
            rows, skipped, batch, batch_entries = ShardRows(), [], [], []

            def flush_batch() -> None:
                if not batch:
                    return
                features = model.grid_features(torch.stack([t for t, _ in batch]), info, spec.grid)
                for entry, (_, (width, height)), feats in zip(batch_entries, batch, features.numpy()):
                    rows.paths.append(entry.path)
                    rows.labels.append(entry.label)
                    rows.widths.append(width)
                    rows.heights.append(height)
                    rows.file_sizes.append(entry.size)
                    rows.mtimes.append(entry.mtime_ns)
                    rows.features.append(feats.astype(np.float16))
                batch.clear()
                batch_entries.clear()

            for position, (entry, result) in enumerate(
                    _decoded(root, pending, model, workers, max_pixels, ahead=2 * batch_size), start=1):
                if cancel is not None and cancel.is_set():
                    summary.cancelled = True
                    break
                if isinstance(result, ImageError):
                    skipped.append({"path": entry.path, "size": entry.size, "mtime_ns": entry.mtime_ns,
                                    "reason": str(result).removeprefix(f"{root / entry.path}: ")})
                else:
                    batch.append(result)
                    batch_entries.append(entry)
                if len(batch) == batch_size:
                    flush_batch()
                if position % shard_images == 0 or position == len(pending):
                    flush_batch()
                    store.append(rows, skipped)
                    summary.indexed += len(rows)
                    rows, skipped = ShardRows(), []
                done = position
                if progress is not None and (not batch or position == len(pending)):
                    progress(Progress(done, len(pending), time.perf_counter() - started))
        finally:
            summary.skipped += [Skipped(s["path"], s["reason"]) for s in store.skipped()]
            summary.cache_files = [str(directory / r.file) for r in store.shards]
            summary.images = sum(r.rows for r in store.shards)
            summary.seconds = time.perf_counter() - started
    return summary
