"""The ``ray`` indexing engine: extraction on Ray Data model actors, shards written on the driver.

The pending images are cut into model batches exactly as :meth:`ExtractionJob.batches` says
(never spanning two shards), one dataset row per batch. ``map_batches`` hands each row to one of
``workers`` actors; an actor holds the model (on a GPU when the cluster has them), reads and
decodes its batch's images itself through :class:`~vfs.features.sources.DatasetSource` (local paths or
``pyarrow.fs`` URIs such as ``s3://``), runs the batch and returns one row per image. Reading
and decoding stay inside the actor so preprocessed tensors (600 kB an image) never travel
between processes; only the float16 grids come back. Rows come back in order, and
:func:`vfs.cache.indexing.build_index` writes them into shards as it does for the local engine.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from vfs.errors import ImageError, VfsError
from vfs.features.extraction import Extracted, ExtractionEngine, ExtractionJob
from vfs.features.images import ImageEntry
from vfs.features.models import FeatureModel, LayerInfo
from vfs.features.sources import DatasetSource

try:
    import ray
    import ray.data
except ImportError:
    raise VfsError("The ray engine needs Ray: pip install 'vfs[ray]'") from None

_MODEL_FIELDS = [f.name for f in dataclasses.fields(FeatureModel) if f.name != "_lock"]  # a lock does not pickle


class _BatchExtractor:
    """A Ray Data actor: one model, loaded once, applied to batch after batch."""

    def __init__(self, model_ref: ray.ObjectRef, source: DatasetSource, layer: LayerInfo, grid: int,
                 max_pixels: int, decode_threads: int):
        model_fields: dict[str, Any] = ray.get(model_ref)  # shipped once through the object store
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        network = model_fields["network"].to(device)
        if device.type == "cpu":
            network = network.to(memory_format=torch.channels_last)
        self.model = FeatureModel(**{**model_fields, "network": network, "device": device})
        self.source, self.layer, self.grid, self.max_pixels = source, layer, grid, max_pixels
        self.pool = ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="vfs-decode")

    def _decode(self, path: str) -> tuple[torch.Tensor, tuple[int, int]] | ImageError:
        try:
            image = self.source.load(path, self.max_pixels)
        except ImageError as exc:
            return exc
        return self.model.preprocessing(image), image.size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (start,), (paths,) = batch["start"], batch["paths"]
        decoded = list(self.pool.map(self._decode, list(paths)))
        images = [d for d in decoded if not isinstance(d, ImageError)]
        shape = (self.layer.channels, self.grid, self.grid)
        features = np.zeros((len(decoded), *shape), np.float16)
        if images:
            grids = self.model.grid_features(torch.stack([t for t, _ in images]), self.layer, self.grid).numpy()
            features[[i for i, d in enumerate(decoded) if not isinstance(d, ImageError)]] = grids.astype(np.float16)
        sizes = [(0, 0) if isinstance(d, ImageError) else d[1] for d in decoded]
        return {"position": np.arange(start, start + len(decoded), dtype=np.int64), "features": features,
                "width": np.array([w for w, _ in sizes], np.int32), "height": np.array([h for _, h in sizes], np.int32),
                "error": np.array([str(d) if isinstance(d, ImageError) else "" for d in decoded], dtype=object)}


class RayEngine(ExtractionEngine):
    """Extraction on ``workers`` Ray actors; joins the cluster at ``address`` or starts a local Ray.

    Each actor takes one GPU when the cluster has GPUs, otherwise ``cpus_per_worker`` CPUs (Ray
    then gives its torch that many threads). A Ray started here is shut down when extraction ends.
    """

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_worker: float = 1.0,
                 decode_threads: int = 2):
        self.workers = max(1, workers)
        self.address = address
        self.cpus_per_worker = cpus_per_worker
        self.decode_threads = decode_threads

    def extract(self, job: ExtractionJob) -> Generator[tuple[ImageEntry, Extracted | ImageError], None, None]:
        if not job.entries:
            return
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
        context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        try:
            context.execution_options.preserve_order = True  # rows must come back in shard order
            context.enable_progress_bars = False  # build_index reports progress itself
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
            model_ref = ray.put({name: getattr(job.model, name) for name in _MODEL_FIELDS})
            batches = [{"start": start, "paths": [e.path for e in job.entries[start:stop]]}
                       for start, stop in job.batches()]
            # a block per batch streams results back batch by batch; past 512 batches, blocks of up to 8
            # keep the number of objects Ray tracks in proportion
            blocks = min(len(batches), max(512, math.ceil(len(batches) / 8)))
            dataset = ray.data.from_items(batches, override_num_blocks=blocks).map_batches(
                _BatchExtractor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=self.workers),
                num_gpus=gpus, num_cpus=0 if gpus else self.cpus_per_worker,
                fn_constructor_args=(model_ref, job.source, job.layer, job.grid, job.max_pixels,
                                     self.decode_threads))
            for expected, row in enumerate(dataset.iter_rows()):
                if row["position"] != expected:
                    raise VfsError(f"Ray returned image {row['position']} where {expected} was due.")
                entry = job.entries[expected]
                if row["error"]:
                    yield entry, ImageError(row["error"])
                else:
                    yield entry, Extracted(np.asarray(row["features"], np.float16), int(row["width"]),
                                           int(row["height"]))
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
            if started_here:
                ray.shutdown()
