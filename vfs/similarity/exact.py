"""Exact region search over a feature cache, behind one interface with interchangeable backends.

Similarity (Ulrich & Fong, "Interactive Visual Feature Search", 2023): for a query grid Q, a
grid mask m cropped to its bounding box (h×w cells) and a dataset grid F, the score of the
window at (y, x) is the cosine between m⊙Q and m⊙F[:, y:y+h, x:x+w]; an image's score is its
best window. The numerator is a correlation of F with the kernel m²⊙Q/‖m⊙Q‖; the squared norm
of the window is the correlation of the per-cell squared norms (stored in the cache) with m², so
a query reads every feature once, in float16. On the CPU the fused kernel of
:mod:`vfs.similarity.kernel` (built at install; AVX-512, AVX2, NEON or portable C, chosen at run
time) converts the features in registers and correlates them there (float32 accumulation), at
about the speed the memory streams them, and torch is not imported at all; where the kernel was
not built, and on CUDA, the PyTorch path converts chunk by chunk into a small float32 buffer and
correlates with matmul/conv (torch is imported then). ``SearchResult.backend`` names what ran:
``fused-avx512``, ``fused-avx2``, ``fused-neon``, ``fused-scalar``, ``torch-cpu`` or ``torch-cuda``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING

import numpy as np

from vfs._registry import Registry
from vfs.cache.feature_cache import FeatureCache
from vfs.errors import MaskError, VfsError
from vfs.features.geometry import Box, grid_bounds, window_to_box
from vfs.similarity import kernel as fused_kernel
from vfs.similarity.ranking import top_k_indices

if TYPE_CHECKING:
    import torch

#: Bytes of float16 features converted per step by the PyTorch path: small enough to stay in L2 cache.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Query:
    """A query grid and the weights of the region on it."""

    features: np.ndarray  # (C, G, G)
    grid_mask: np.ndarray  # (G, G), weights in [0, 1]

    def __post_init__(self) -> None:
        if self.features.ndim != 3 or self.grid_mask.shape != self.features.shape[1:]:
            raise MaskError(f"Query features {self.features.shape} and grid mask {self.grid_mask.shape} disagree.")

    @cached_property
    def bounds(self) -> tuple[int, int, int, int]:
        return grid_bounds(self.grid_mask)

    @property
    def window_shape(self) -> tuple[int, int]:
        top, left, bottom, right = self.bounds
        return bottom - top, right - left

    @cached_property
    def weights(self) -> np.ndarray:
        """The mask cropped to its bounding box, float64."""
        top, left, bottom, right = self.bounds
        return self.grid_mask[top:bottom, left:right].astype(np.float64)

    @cached_property
    def kernel(self) -> np.ndarray:
        """m²⊙Q/‖m⊙Q‖ over the bounding box, (C, h, w) float64."""
        top, left, bottom, right = self.bounds
        weighted = self.features[:, top:bottom, left:right].astype(np.float64) * self.weights
        norm = float(np.sqrt((weighted**2).sum()))
        if norm == 0.0:
            raise MaskError("The region's features are all zero at this layer; choose another region or layer.")
        return weighted * self.weights / norm


@dataclass(frozen=True)
class Match:
    index: int
    path: str
    label: str | None
    score: float
    box: Box  # in the original image's pixels
    window: tuple[int, int, int, int]  # top, left, height, width in grid cells (of its scale's grid)
    scale: float = 1.0  # the object's size relative to the query's (vfs.similarity.scales)

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "score": round(self.score, 6),
                "box": [round(v, 2) for v in self.box], "scale": self.scale}


@dataclass
class SearchResult:
    scores: np.ndarray  # (N,) best score of every image (-inf where excluded)
    windows: np.ndarray  # (N, 2) top, left of each image's best window
    window_shape: tuple[int, int]
    grid_mask: np.ndarray
    matches: list[Match] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = ""
    approximate: bool = False  # True: only the candidates a shortlist chose were scored (vfs.similarity.approximate)
    candidates: int | None = None  # how many images an approximate search scored


class SimilarityBackend(ABC):
    """Computes every window's score of every image; the caller never knows which backend runs."""

    name: str = ""

    @abstractmethod
    def window_scores(self, features: np.ndarray, cell_norms2: np.ndarray, query: Query) -> np.ndarray:
        """(n, C, G, G) float16 features -> (n, G-h+1, G-w+1) float32 scores."""

    @abstractmethod
    def best_windows(self, cache: FeatureCache, query: Query) -> tuple[np.ndarray, np.ndarray]:
        """Best score (N,) float32 and flat index of its window (N,) int64 for every image."""


def _mapped_tensor(array: np.ndarray) -> torch.Tensor:
    """A zero-copy tensor over a read-only memory map (never written to)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class _Plan:
    """A query laid out as tensors for one device, with the cheapest way to correlate it."""

    def __init__(self, query: Query, grid: int, device: torch.device, strategy: str | None = None):
        import torch

        h, w = query.window_shape
        self.out_shape = (grid - h + 1, grid - w + 1)
        windows = self.out_shape[0] * self.out_shape[1]
        kernel = torch.from_numpy(query.kernel.astype(np.float32)).to(device)
        self.mask_sq = torch.from_numpy((query.weights**2).astype(np.float32)).to(device)[None, None]
        active = np.flatnonzero(query.weights.reshape(-1) > 0)
        if strategy is None:
            # dense: one window, a plain dot product; cells: one small matmul over the active
            # mask cells then a shift-and-add; conv: direct correlation (fewer windows than cells).
            if windows == 1:
                strategy = "dense"
            elif active.size * grid * grid <= 2 * windows * h * w:
                strategy = "cells"
            else:
                strategy = "conv"
        if strategy == "dense" and windows != 1:
            raise ValueError("the dense strategy needs a region whose bounding box is the whole grid")
        self.strategy = strategy
        if strategy == "dense":
            full = torch.zeros(kernel.shape[0], grid, grid, device=device)
            top, left, _, _ = query.bounds
            full[:, top:top + h, left:left + w] = kernel
            self.kernel = full.reshape(-1)
        elif strategy == "cells":
            self.kernel = kernel.reshape(kernel.shape[0], -1)[:, active].T.contiguous()  # (K, C)
            onehot = torch.zeros(active.size, h * w, device=device)
            onehot[torch.arange(active.size), torch.from_numpy(active)] = 1.0
            self.scatter = onehot.reshape(1, active.size, h, w)
        else:
            self.kernel = kernel[None]  # (1, C, h, w)

    def numerator(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        n, c, g, _ = x.shape
        if self.strategy == "dense":
            return (x.reshape(n, -1) @ self.kernel).reshape(n, 1, 1)
        if self.strategy == "cells":
            cells = torch.matmul(self.kernel, x.reshape(n, c, g * g)).reshape(n, -1, g, g)
            return F.conv2d(cells, self.scatter)[:, 0]
        return F.conv2d(x, self.kernel)[:, 0]

    def scores(self, x: torch.Tensor, cell_norms2: torch.Tensor) -> torch.Tensor:
        """(n, C, G, G) float32 features and (n, G, G) norms -> (n, H', W') cosines."""
        import torch
        import torch.nn.functional as F

        norms2 = F.conv2d(cell_norms2[:, None], self.mask_sq)[:, 0]
        numerator = self.numerator(x)
        norms = torch.sqrt(norms2.clamp_min(0.0))
        # a window whose features are all zero has no direction: score 0, not NaN
        return torch.where(norms > 0, numerator / norms.clamp_min(1e-30), torch.zeros_like(numerator)).clamp_(-1.0, 1.0)


#: Caches whose memory map has been populated (by the first fused query).
_POPULATED: weakref.WeakSet = weakref.WeakSet()


class TorchBackend(SimilarityBackend):
    """Scan of the memory map on the CPU or a CUDA device.

    On the CPU, with no strategy forced (or ``strategy="fused"``), the fused kernel of
    :mod:`vfs.similarity.kernel` reads the float16 features once and keeps the correlation in
    registers (``isa`` forces its instruction set, as the ``fused-<isa>`` backends do; else the
    CPU's widest, or ``VFS_KERNEL_ISA``); where it was not built it falls back to the chunked
    PyTorch scan (strategies ``dense``, ``cells``, ``conv``), which a forced strategy also
    selects. torch is imported only when the PyTorch scan runs (or the device is not the CPU): a
    search-only process that the fused kernel serves never loads it.
    """

    def __init__(self, device: str | torch.device = "cpu", strategy: str | None = None, isa: str | None = None):
        self._device_name = device if isinstance(device, str) else str(device)
        self.device_type = self._device_name.split(":")[0]
        self.name = f"fused-{isa}" if isa else f"torch-{self.device_type}"
        self.strategy = strategy
        self.isa = isa
        if isa is not None and (self._kernel() is None or self.device_type != "cpu"):
            raise VfsError(f"The fused-{isa} backend is unavailable here ({fused_kernel.error or 'a CPU-only kernel'}).")
        self._resident: dict[int, tuple[object, list[torch.Tensor]]] = {}
        self._lock = threading.Lock()

    @cached_property
    def device(self) -> torch.device:
        import torch

        return torch.device(self._device_name)

    def _kernel(self):  # -> the fused kernel this backend scans with, or None (PyTorch path)
        try:
            return fused_kernel.load(self.isa)
        except fused_kernel.KernelError as exc:
            raise VfsError(f"The fused kernel cannot run here: {exc}.") from None

    def _fused(self, grid: int, query: Query) -> fused_kernel.NativePlan | None:
        """The fused CPU plan for ``query``, or None where the PyTorch scan runs instead."""
        if self.device_type != "cpu" or self.strategy not in (None, "fused"):
            return None
        h, w = query.window_shape
        scanner = self._kernel() if fused_kernel.NativePlan.supported(grid, h, w) else None
        if scanner is None:
            if self.strategy == "fused" or self.isa:
                raise VfsError(f"The fused kernel is unavailable ({fused_kernel.error or 'grid too large'}).")
            if fused_kernel.NativePlan.supported(grid, h, w):
                fused_kernel.warn_fallback()
            return None
        return fused_kernel.NativePlan(query.kernel, query.weights, grid, isa=scanner.isa)

    def runs_on(self, grid: int, query: Query) -> str:
        """What scans ``query`` on a ``grid``: ``fused-<isa>``, or ``torch-cpu``/``torch-cuda``."""
        if (self.device_type == "cpu" and self.strategy in (None, "fused")
                and fused_kernel.NativePlan.supported(grid, *query.window_shape) and self._kernel() is not None):
            return self._kernel().backend
        return f"torch-{self.device_type}"

    def _chunk_rows(self, cache_or_shape: tuple[int, int, int]) -> int:
        c, g, _ = cache_or_shape
        if self.device_type != "cpu":
            return 8192
        return max(1, CHUNK_BYTES // (c * g * g * 2))

    def window_scores(self, features: np.ndarray, cell_norms2: np.ndarray, query: Query) -> np.ndarray:
        fused = self._fused(features.shape[-1], query)
        if fused is not None:
            g = features.shape[-1]
            h, w = query.window_shape
            n = len(features)
            out = np.empty((n, g - h + 1, g - w + 1), np.float32)
            feats = np.ascontiguousarray(features, dtype=np.float16)
            norms = np.ascontiguousarray(cell_norms2, dtype=np.float32)
            fused_kernel.load(self.isa).scan([(feats, norms, np.empty(n, np.float32), np.empty(n, np.int64), out)],
                                fused, threads=fused_kernel.default_threads())
            return out
        import torch

        plan = _Plan(query, features.shape[-1], self.device, self.strategy)
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(features)).to(self.device, torch.float32)
            n2 = torch.from_numpy(np.asarray(cell_norms2)).to(self.device, torch.float32)
            return plan.scores(x, n2).cpu().numpy()

    def _device_shards(self, cache: FeatureCache) -> list[torch.Tensor]:
        """On a GPU the float16 features stay resident after the first query."""
        with self._lock:
            entry = self._resident.get(id(cache))
            if entry is None or entry[0] is not cache:
                tensors = [_mapped_tensor(s.features).to(self.device) for s in cache.shards]
                self._resident = {id(cache): (cache, tensors)}
                entry = self._resident[id(cache)]
            return entry[1]

    def best_windows(self, cache: FeatureCache, query: Query) -> tuple[np.ndarray, np.ndarray]:
        n = len(cache)
        best = np.empty(n, dtype=np.float32)
        where = np.empty(n, dtype=np.int64)
        if n == 0:
            return best, where
        fused = self._fused(cache.grid, query)
        if fused is not None:
            if cache not in _POPULATED:  # map the whole cache in at once: far cheaper than page faults
                fused_kernel.populate([a for shard in cache.shards for a in (shard.features, shard.cell_norms2)])
                _POPULATED.add(cache)
            fused_kernel.load(self.isa).scan([(shard.features, shard.cell_norms2, best[shard.offset: shard.offset + len(shard.features)],
                                  where[shard.offset: shard.offset + len(shard.features)], None)
                                 for shard in cache.shards], fused, threads=fused_kernel.default_threads())
            return best, where
        import torch

        scores, flat = torch.from_numpy(best), torch.from_numpy(where)  # written through in place
        plan = _Plan(query, cache.grid, self.device, self.strategy)
        rows = self._chunk_rows((cache.channels, cache.grid, cache.grid))
        sources = self._device_shards(cache) if self.device_type != "cpu" else None
        buffer = torch.empty((rows, cache.channels, cache.grid, cache.grid), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            for s, shard in enumerate(cache.shards):
                feats = sources[s] if sources is not None else _mapped_tensor(shard.features)
                norms = _mapped_tensor(shard.cell_norms2).to(self.device)
                for start in range(0, len(shard.features), rows):
                    stop = min(start + rows, len(shard.features))
                    x = buffer[: stop - start]
                    x.copy_(feats[start:stop])  # float16 -> float32 at memory speed, into a reused buffer
                    window = plan.scores(x, norms[start:stop]).reshape(stop - start, -1)
                    best = window.argmax(dim=1)  # first maximum: ties go to the top-left window
                    begin = shard.offset + start
                    scores[begin: begin + stop - start] = window.gather(1, best[:, None])[:, 0].cpu()
                    flat[begin: begin + stop - start] = best.cpu()
        return scores.numpy(), flat.numpy()


#: Device files a GPU driver creates (NVIDIA, ROCm, WSL): without one, CUDA cannot be there.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")

#: Every search backend by name. ``torch-cpu`` runs the fused kernel where it was built (and says
#: ``fused-<isa>`` in results), ``fused-<isa>`` forces one instruction set; the sharded backends are
#: in :mod:`vfs.similarity.sharded`, imported when first asked for (``ray-sharded`` needs Ray).
BACKENDS: Registry[SimilarityBackend] = Registry("search backend", {
    "torch-cpu": partial(TorchBackend, "cpu"),
    "torch-cuda": partial(TorchBackend, "cuda"),
    **{f"fused-{isa}": partial(TorchBackend, "cpu", "fused", isa=isa) for isa in fused_kernel.ISAS},
    "sharded": "vfs.similarity.sharded:ShardedBackend",
    "ray-sharded": "vfs.similarity.sharded:shared_ray_backend",
})


def register_backend(name: str, factory: str | Callable[[], SimilarityBackend]) -> None:
    """``factory`` makes the backend: a callable, or ``"module:attribute"`` imported when first asked for."""
    BACKENDS.register(name, factory)


def list_backends() -> list[str]:
    """Registered backends; of the ``fused-<isa>`` ones, those this CPU runs."""
    return [n for n in BACKENDS.names() if not n.startswith("fused-") or n[6:] in fused_kernel.runnable_isas()]


def cuda_available() -> bool:
    """Whether torch sees a CUDA device. torch is imported for the answer only where it is loaded
    already or a GPU driver is present, so a search on a CPU-only machine stays torch-free."""
    if "torch" not in sys.modules and sys.platform != "win32" and not any(map(os.path.exists, _GPU_DEVICE_FILES)):
        return False
    import torch

    return torch.cuda.is_available()


def default_backend() -> str:
    """What ``"auto"`` means: ``torch-cuda`` where a CUDA device is present, else ``torch-cpu``
    (whose CPU path is the fused kernel of :mod:`vfs.similarity.kernel`, or the PyTorch scan without it)."""
    return "torch-cuda" if cuda_available() else "torch-cpu"


def get_backend(name: str = "auto") -> SimilarityBackend:
    return BACKENDS.create(default_backend() if name == "auto" else name)


def search(cache: FeatureCache, query: Query, top_k: int = 20, exclude: list[int] | None = None,
           backend: SimilarityBackend | str = "auto") -> SearchResult:
    """Score every image of ``cache`` against ``query``; the ``top_k`` best become matches.

    Ties are broken by dataset order (then by the top-left-most window), so results are
    deterministic.
    """
    if query.features.shape != (cache.channels, cache.grid, cache.grid):
        raise MaskError(f"Query features {query.features.shape} do not match the cache "
                        f"({cache.channels}, {cache.grid}, {cache.grid}).")
    engine = get_backend(backend) if isinstance(backend, str) else backend
    started = time.perf_counter()
    scores, flat = engine.best_windows(cache, query)
    h, w = query.window_shape
    out_w = cache.grid - w + 1
    windows = np.stack([flat // out_w, flat % out_w], axis=1)
    ranked = scores.astype(np.float64)
    if exclude:
        ranked[np.asarray(exclude, dtype=np.int64)] = -np.inf
    order = top_k_indices(ranked, top_k)
    matches = []
    for i in order:
        top, left = (int(v) for v in windows[i])
        size = (int(cache.image_sizes[i, 0]), int(cache.image_sizes[i, 1]))
        matches.append(Match(int(i), cache.paths[i], cache.labels[i], float(scores[i]),
                             window_to_box(top, left, h, w, size, cache.grid), (top, left, h, w)))
    seconds = time.perf_counter() - started
    ran = engine.runs_on(cache.grid, query) if isinstance(engine, TorchBackend) else engine.name  # what scanned
    return SearchResult(np.where(np.isfinite(ranked), scores, -np.inf).astype(np.float32), windows, (h, w),
                        query.grid_mask, matches, seconds, ran)
