"""Engines that run a model over many images: the pending list in, each image's pooled grid out.

Indexing (:func:`vfs.cache.indexing.build_index`) hands an :class:`ExtractionJob` to an
:class:`ExtractionEngine` picked by name from :data:`ENGINES`: ``local`` (decoding threads and
the model in this process) or ``ray`` (Ray Data actors across a cluster, see
:mod:`vfs.features.ray_extraction`). Every engine returns results in the job's order; shards are
cut and written by indexing, so the files and crash safety do not depend on the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfs._registry import Registry
from vfs.errors import ImageError
from vfs.features.images import ImageEntry
from vfs.features.models import FeatureModel, LayerInfo
from vfs.features.sources import DatasetSource


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


#: ``factory(workers=..., **options)`` makes an engine; ``workers`` is its parallelism.
ENGINES: Registry[ExtractionEngine] = Registry("indexing engine", {
    "local": LocalEngine,
    "ray": "vfs.features.ray_extraction:RayEngine",  # Ray is an optional extra, imported only when asked for
})


def register_engine(name: str, factory: Any) -> None:
    ENGINES.register(name, factory)


def list_engines() -> list[str]:
    return ENGINES.names()


def get_engine(name: str = "local", **options: Any) -> ExtractionEngine:
    return ENGINES.create(name, **options)
