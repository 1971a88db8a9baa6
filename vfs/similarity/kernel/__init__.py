"""The fused CPU kernel for region search: float16 features in, each image's best window out.

The PyTorch path converts every chunk of float16 features into a float32 buffer and then runs a
matmul over it: two passes over the data and a GEMM over every grid cell. This kernel reads
every feature once and keeps the correlation in registers. With K active mask cells at window
offsets ``o_k = i·G + j``, the numerator of the window at flattened position ``q = y·G + x`` is
``Σ_k T[k, q + o_k]`` with ``T[k, p] = Σ_c K[c, k] · F[c, p]``; four correlations compute it:

* ``cells``: T as a register-blocked GEMM (N row vectors × M active cells per block, sized to the
  ISA's registers) whose float16 rows are loaded and converted in registers ("direct"; a short
  tail of 1–4 cells per row — 49 = 3·16 + 1 at 7×7 — goes through a column buffer), then a
  shift-and-add of K rows of T into the windows. Larger grids with a long tail convert blocks of
  rows into an L1 scratch first. Best for small masks: one cell, 3×3, brush strokes.
* ``shift``: ``num[q] += K[c, k] · F[c, q + o_k]`` directly, vectors over q with unaligned loads
  (positions with ``x ≥ W'`` wrap around and are ignored). Best when few windows remain and many
  cells are active (a 6×6 box on a 7×7 grid).
* ``lanes``: channels in lanes. Each block of 16 channels (AVX-512; 8 with AVX2, 4 with NEON) is
  transposed into a cell-major float32 scratch in L1 (vector shuffles); every window keeps a vector of partial
  sums in registers while each active cell's query vector meets the window's cell: one aligned load
  and one FMA per vector of channels, only the windows' cells, every lane used; the lanes are summed
  once per window. The fewest multiply-adds for any mask: best for brush strokes and, with 16
  registers (AVX2), for 3×3; the next image is prefetched a few lines per step of the arithmetic.
* ``dense``: the box is the whole grid, one window: a flat dot product of the image with the kernel.

The window norms come from the cached per-cell squared norms the same way, the cosines are
computed in vector form, and the first maximum (row-major) wins, as in the PyTorch path.
Software prefetch keeps the memory streaming while a block is correlated.

Arithmetic is float32 accumulation (blocked) of exactly converted float16 values; it agrees
with a float64 brute force to about 1e-6 (``bench/exactness.py`` and the tests).

**Build and dispatch.** The C source (``scan.h`` over the vector layer ``isa.h``) is compiled
when the package is installed (``setup.py``, a setuptools extension), once per instruction set,
each object with its own flags and never ``-march=native``, into one shared object
(``_scan*.so``): ``avx512`` (AVX-512F and BW with FMA/F16C, 16 lanes), ``avx2`` (AVX2+FMA+F16C, 8 lanes),
``neon`` (AArch64, whose base ISA converts float16), and ``scalar`` (portable C: baseline SIMD
through vector extensions, software float16 conversion). At load, CPU feature detection (cpuid,
and xgetbv for the operating system's YMM/ZMM state) picks the widest one this CPU runs;
``VFS_KERNEL_ISA=auto|avx512|avx2|neon|scalar`` forces one (an error where the CPU lacks it), and
``VFS_NATIVE=0`` turns the kernel off. The object is loaded with ctypes, which releases the GIL,
so a small thread pool splits the images over the cores. Where no compiler was available at
install, :func:`load` returns None, search uses the PyTorch path and says so once.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import platform
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: Instruction sets of the kernel, widest first.
ISAS = ("avx512", "avx2", "neon", "scalar")
_ISA_BITS = {"avx512": 1, "avx2": 2, "neon": 4, "scalar": 8}
#: Feature bits of ``vfs_cpu_features`` (module.c).
_FEATURE_BITS = {"sse2": 0, "avx": 1, "avx2": 2, "fma": 3, "f16c": 4, "avx512f": 5, "avx512bw": 6,
                 "avx512dq": 7, "avx512vl": 8, "os_ymm": 9, "os_zmm": 10, "osxsave": 11, "avx512fp16": 12,
                 "neon": 16, "fp16": 17}
#: What each instruction set needs of the CPU (and of the operating system).
_NEEDS = {"avx512": ("avx512f", "avx512bw", "avx2", "fma", "f16c", "os_zmm"), "avx2": ("avx2", "fma", "f16c", "os_ymm"),
          "neon": ("neon",), "scalar": ()}
#: Vector lanes, row vectors per register block, active cells per block of n row vectors, and the
#: most passes of the direct cells kernel: isa.h's constants, for NativePlan.choose.
ISA_SHAPES = {
    "avx512": (16, 4, lambda n: 9 if n <= 3 else 6, 12),
    "avx2": (8, 4, lambda n: 9 if n == 1 else 6 if n == 2 else 4 if n == 3 else 2, 12),
    "neon": (4, 4, lambda n: 9 if n <= 3 else 6, 24),
    "scalar": (4, 4, lambda n: 9 if n == 1 else 6 if n == 2 else 4 if n == 3 else 2, 24),
}
#: Weight of the lanes correlation's estimate: with 16 registers (AVX2, SSE2) the cells kernels' register
#: blocks are small and lanes wins earlier; measured (CPU time, 3,925 images, AMD Zen 5): AVX2 3×3 at
#: 7×7 and 14×14 13-14% faster with lanes, where the unweighted estimate still picked cells.
LANES_WEIGHT = {"avx2": 0.8, "scalar": 0.8}
#: The correlations' ids in scan.h.
MODE_IDS = {"dense": 0, "shift": 1, "cells": 2, "lanes": 3}
#: Weight of the cells correlation's estimate against shift's: the portable path converts float16
#: through a table (4 loads and inserts per vector), which the cells kernels repeat per pass;
#: measured (CPU time, 3,925 images): shift 15-55% faster for 3×3 and strokes at 7×7 and 14×14.
CELLS_WEIGHT = {"scalar": 2.0}

_lock = threading.Lock()
_kernels: dict[str, _Kernel] = {}
_lib: ctypes.CDLL | None = None
_lib_tried = False
_warned = False
error: str | None = None  # why the kernel is unavailable, for diagnostics
isa: str | None = None  # the instruction set :func:`load` chose
reason: str = ""  # why it was chosen (or why none was)


class KernelError(RuntimeError):
    """A forced instruction set (``VFS_KERNEL_ISA``, ``fused-<isa>``) this machine cannot run."""


def library_path() -> Path | None:
    """The built shared object, or None where the package was installed without a compiler."""
    try:
        spec = importlib.util.find_spec(f"{__name__}._scan")
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _library() -> ctypes.CDLL | None:
    global _lib, _lib_tried, error
    if _lib_tried:
        return _lib
    with _lock:
        if not _lib_tried:
            path = library_path()
            if path is None:
                error = ("the fused kernel was not built when vfs was installed (no C compiler then?); "
                         "reinstall with gcc or clang available")
            else:
                try:
                    lib = ctypes.CDLL(str(path))
                    lib.vfs_cpu_features.restype = ctypes.c_int
                    lib.vfs_isa_built.restype = ctypes.c_int
                    lib.vfs_build_info.restype = ctypes.c_char_p
                    _lib = lib
                except (OSError, AttributeError) as exc:
                    error = f"the fused kernel {path.name} does not load: {exc}"
            _lib_tried = True
    return _lib


def cpu_features() -> dict[str, bool]:
    """The CPU features the kernel's dispatch looks at (x86: cpuid and the OS's XSAVE state)."""
    lib = _library()
    if lib is None:  # no kernel to ask: what the operating system reports (Linux)
        try:
            with open("/proc/cpuinfo") as handle:
                flags = next((line.split(":", 1)[1].split() for line in handle
                              if line.startswith(("flags", "Features"))), [])
        except OSError:
            return {}
        names = {"sse2": "sse2", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f",
                 "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
                 "avx512fp16": "avx512_fp16", "neon": "asimd", "fp16": "fphp"}
        return {name: flag in flags for name, flag in names.items() if flag in flags}
    bits = lib.vfs_cpu_features()
    wanted = ("neon", "fp16") if platform.machine().lower() in ("aarch64", "arm64") else \
        tuple(k for k in _FEATURE_BITS if k not in ("neon", "fp16"))
    return {name: bool(bits >> _FEATURE_BITS[name] & 1) for name in wanted}


def built_isas() -> list[str]:
    """Instruction sets compiled into the installed kernel."""
    lib = _library()
    return [] if lib is None else [name for name in ISAS if lib.vfs_isa_built() & _ISA_BITS[name]]


def _missing(name: str) -> list[str]:
    if name not in built_isas():
        return ["not built for this architecture"]
    features = cpu_features()
    return [need for need in _NEEDS[name] if not features.get(need)]


def runnable_isas() -> list[str]:
    """Built instruction sets this CPU can execute, widest first (empty without the kernel)."""
    if _disabled():
        return []
    return [name for name in built_isas() if not _missing(name)]


def _disabled() -> bool:
    return os.environ.get("VFS_NATIVE", "1").lower() in ("0", "false", "no", "off")


def requested_isa() -> str:
    return (os.environ.get("VFS_KERNEL_ISA") or "auto").strip().lower()


def _choose() -> tuple[str | None, str]:
    """The instruction set to run and why, from ``VFS_KERNEL_ISA`` and the CPU's features."""
    if _disabled():
        return None, "disabled by VFS_NATIVE=0"
    if _library() is None:
        return None, error or "not built"
    wanted = requested_isa()
    if wanted not in ("auto", *ISAS):
        raise KernelError(f"VFS_KERNEL_ISA={wanted!r} is not one of auto, {', '.join(ISAS)}")
    runnable = runnable_isas()
    if wanted != "auto":
        if wanted not in runnable:
            raise KernelError(f"VFS_KERNEL_ISA={wanted} but this CPU cannot run it "
                              f"(missing: {', '.join(_missing(wanted))})")
        return wanted, f"forced by VFS_KERNEL_ISA={wanted}"
    best = runnable[0]
    skipped = [f"{name} (missing {', '.join(_missing(name))})" for name in built_isas()[:built_isas().index(best)]]
    return best, "widest the CPU supports" + (f"; not {', '.join(skipped)}" if skipped else "")


class _Kernel:
    def __init__(self, lib: ctypes.CDLL, isa_name: str):
        fn = getattr(lib, f"vfs_scan_{isa_name}")
        p = ctypes.c_void_p
        fn.argtypes = [p, p, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, p, p, p, p, ctypes.c_int, p, p, p]
        fn.restype = ctypes.c_int
        self._fn = fn
        self._lib = lib
        self.isa = isa_name
        self.backend = f"fused-{isa_name}"
        self.path = library_path()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def _executor(self, threads: int) -> ThreadPoolExecutor:
        with _lock:
            if self._pool is None or self._pool_size != threads:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vfs-scan")
                self._pool_size = threads
            return self._pool

    def scan(self, segments: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
             plan: NativePlan, threads: int = 1) -> None:
        """For each (features, norms2, best, flat, all_scores or None) segment of (n, C, G, G) float16
        features and (n, G, G) float32 norms, fill best (n,), flat (n,) and all_scores (n, H', W').

        The images of all segments are cut into ``threads`` contiguous runs of equal length; the
        calling thread scans the first, pool threads the others (one hand-off each).
        """
        live = []
        for features, norms2, best, flat, all_scores in segments:
            n = len(features)
            if n == 0:
                continue
            if features.dtype != np.float16 or not features.flags.c_contiguous or features.ndim != 4:
                raise ValueError("features must be C-contiguous (n, C, G, G) float16")
            if norms2.dtype != np.float32 or not norms2.flags.c_contiguous or norms2.shape != (n, *features.shape[2:]):
                raise ValueError("cell norms must be C-contiguous (n, G, G) float32")
            live.append((features, norms2, best, flat, all_scores))
        total = sum(len(seg[0]) for seg in live)
        runs = max(1, min(threads, total // 64))
        cuts = [total * i // runs for i in range(runs + 1)]
        chunks: list[list[tuple]] = [[] for _ in range(runs)]
        offset = 0
        for seg in live:  # split the segments at the cuts
            n = len(seg[0])
            for r in range(runs):
                lo, hi = max(cuts[r], offset), min(cuts[r + 1], offset + n)
                if lo < hi:
                    chunks[r].append((*seg, lo - offset, hi - offset))
            offset += n

        def run(chunk: list[tuple]) -> int:
            code = 0
            for features, norms2, best, flat, all_scores, start, stop in chunk:
                _, c, g, _ = features.shape
                out = None if all_scores is None else all_scores[start:].ctypes.data
                code |= self._fn(features[start:].ctypes.data, norms2[start:].ctypes.data, stop - start, c, g,
                                 plan.h, plan.w, plan.k, plan.off.ctypes.data, plan.msq.ctypes.data,
                                 plan.kern.ctypes.data, plan.kern_t.ctypes.data, plan.mode_id,
                                 best[start:].ctypes.data, flat[start:].ctypes.data, out)
            return code

        if runs == 1:
            codes = [run(chunks[0])]
        else:
            futures = [self._executor(runs - 1).submit(run, chunk) for chunk in chunks[1:]]
            codes = [run(chunks[0])] + [f.result() for f in futures]
        if any(codes):
            raise RuntimeError("native scan rejected the query shape")



class NativePlan:
    """A query laid out for :meth:`_Kernel.scan`, with the cheapest of the kernel's correlations.

    ``dense`` (the box is the whole grid: one window): a flat dot product of each image with the
    kernel. ``cells``: a register-blocked GEMM of the K active cells' kernels against every grid
    cell, then a shift-and-add of K rows into the windows; for grids up to 8×8 the float16 rows
    are converted in registers ("direct"), for larger ones through an L1 scratch. Best for
    small masks (one cell, 3×3, strokes). ``shift``: correlation directly on the flattened grid
    with unaligned loads; best when few windows remain and many cells are active. ``lanes``:
    channels in vector lanes after a transposition, one FMA per (window, active cell, vector of
    channels); best for strokes (and 3×3 where the ISA has 16 registers).
    """

    SCRATCH, MAXT, MAXL, MAXX, MAXQ = 6144, 16384, 1024, 65536, 65536  # the C source's limits

    def __init__(self, kernel: np.ndarray, weights: np.ndarray, grid: int, mode: str | None = None,
                 isa: str = "avx512"):
        """``kernel`` (C, h, w) = m²⊙Q/‖m⊙Q‖ over the bounding box; ``weights`` (h, w) the cropped mask;
        ``isa`` the instruction set that will scan (its vector width decides the cheaper correlation)."""
        c, h, w = kernel.shape
        self.h, self.w = h, w
        if h == grid and w == grid:
            mode = "dense"
        elif mode is None:
            mode = self.choose(grid, h, w, int((weights > 0).sum()), isa, channels=c)
        self.mode = mode
        self.mode_id = MODE_IDS[mode]
        if mode == "dense":
            self.k = grid * grid
            self.off = np.zeros(1, np.int32)
            self.kern = np.ascontiguousarray(kernel.reshape(c, -1), dtype=np.float32)
            self.msq = np.ascontiguousarray((weights**2).reshape(-1), dtype=np.float32)
            self.kern_t = self.kern
        else:
            active = np.flatnonzero(weights.reshape(-1) > 0)
            self.k = int(active.size)
            self.off = np.ascontiguousarray((active // w) * grid + active % w, dtype=np.int32)
            self.kern = np.ascontiguousarray(kernel.reshape(c, -1)[:, active], dtype=np.float32)
            self.msq = np.ascontiguousarray((weights.reshape(-1)[active]) ** 2, dtype=np.float32)
            self.kern_t = np.ascontiguousarray(self.kern.T)  # (K, C): the cells kernel's tail columns

    @classmethod
    def fits(cls, mode: str, grid: int, h: int, w: int, active: int, channels: int = 1) -> bool:
        """Whether the C kernel's fixed buffers hold this query in ``mode`` (lanes: with ``channels``)."""
        gg = grid * grid
        padded = -(-gg // 16) * 16
        length = (grid - h) * grid + grid - w + 1
        nv = -(-length // 16)
        if mode == "dense":
            return h == grid and w == grid and gg + 32 <= cls.SCRATCH
        if 16 * nv > cls.MAXL:
            return False
        if mode == "cells":
            return active * padded <= cls.MAXT and padded + 16 * nv + 16 <= cls.SCRATCH
        if mode == "lanes" and (16 * gg > cls.MAXX or -(-channels // 16) * 16 * active > cls.MAXQ):
            return False
        return gg + 16 * nv + 16 <= cls.SCRATCH

    @classmethod
    def choose(cls, grid: int, h: int, w: int, active: int, isa: str = "avx512", channels: int = 1) -> str:
        """The cheapest correlation by a per-channel cycle estimate, in units of ``isa``'s vectors (its
        width and register blocks, as in isa.h). Cells against shift was calibrated with AVX-512 on
        a 2-core Sapphire Rapids with A/B runs of every window shape from 1×1 to 6×6 at G=7 and
        G=14; lanes against both on AMD Zen 5 (AVX-512, AVX2, portable C) with ``bench.kernel_modes``
        (see bench/RESULTS.md). Ties go to cells, then shift."""
        lanes, _, _, max_passes = ISA_SHAPES.get(isa, ISA_SHAPES["avx512"])
        gg = grid * grid
        full, tail = divmod(gg, lanes)
        length = (grid - h) * grid + grid - w + 1
        shift_cost = active * (-(-length // 16) * 16 // lanes) * 0.9  # load-bound: unaligned loads
        direct_cost, passes = block_cost(full, active, isa, convert=True) if full >= 1 else (1 << 30, 0)
        scratch_cost, _ = block_cost(full + (tail > 4), active, isa, convert=False)
        if full >= 1 and tail <= 4 and passes <= max_passes and direct_cost <= scratch_cost + 2 * full:
            cells_cost = direct_cost * 0.5  # the register-only direct kernel (float16 read in place)
        else:  # rows converted once into an L1 scratch, then a register-blocked GEMM
            cells_cost = scratch_cost * 0.8
        # lanes: one FMA per window, active cell and vector of channels, plus the transposition of
        # every cell (a conversion, four shuffles and a store per vector: 1.5 FMAs' worth, measured)
        windows = (grid - h + 1) * (grid - w + 1)
        costs = {"shift": shift_cost}
        if cls.fits("cells", grid, h, w, active):
            costs["cells"] = cells_cost * CELLS_WEIGHT.get(isa, 1.0)
        if cls.fits("lanes", grid, h, w, active, channels):
            costs["lanes"] = (active * windows + 1.5 * gg) / lanes * LANES_WEIGHT.get(isa, 1.0)
        return min(("cells", "shift", "lanes"), key=lambda mode: costs.get(mode, math.inf))

    @classmethod
    def supported(cls, grid: int, h: int, w: int) -> bool:
        return cls.fits("dense" if (h, w) == (grid, grid) else "shift", grid, h, w, 1)


def block_cost(full: int, active: int, isa: str, convert: bool) -> tuple[int, int]:
    """FMA-port operations per channel of the cells kernel's cheapest register block (conversions
    where ``convert``, and FMAs: the estimate the shift/cells choice was calibrated with; scan.h's
    block_rows also counts FMA latency and a cost per pass to pick the block), and its passes."""
    _, most, maxm, _ = ISA_SHAPES.get(isa, ISA_SHAPES["avx512"])
    best = (1 << 30, 0)
    for n in range(1, most + 1):
        cost = passes = 0
        for start in range(0, full, n):
            width = min(n, full - start)
            for group in range(0, active, maxm(width)):
                ops = width * min(maxm(width), active - group) + (width if convert else 0)
                cost += ops
                passes += 1
        if cost <= best[0]:  # ties: the wider block (fewer passes), as in scan.h
            best = (cost, passes)
    return best


def _cgroup_cpus() -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None."""
    candidates = []
    try:
        with open("/proc/self/cgroup") as handle:
            for line in handle:
                parts = line.strip().split(":", 2)
                if len(parts) == 3 and (parts[0] == "0" or "cpu" in parts[1].split(",")):
                    candidates.append((parts[0] == "0", parts[2]))
    except OSError:
        return None
    for v2, rel in candidates:
        roots = ["/sys/fs/cgroup"] if v2 else ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"]
        for root in roots:
            folder = Path(root + rel)
            while True:  # the quota may be set on an ancestor of the process's cgroup
                try:
                    if v2:
                        quota, period = (folder / "cpu.max").read_text().split()[:2]
                        if quota != "max":
                            return int(quota) / int(period)
                    else:
                        quota = int((folder / "cpu.cfs_quota_us").read_text())
                        if quota > 0:
                            return quota / int((folder / "cpu.cfs_period_us").read_text())
                except (OSError, ValueError):
                    pass
                if folder == Path(root) or folder.parent == folder:
                    break
                folder = folder.parent
    return None


def available_cpus() -> tuple[int, str]:
    """CPUs this process may use and where the number comes from (affinity, cgroup quota)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    source = "sched_getaffinity" if hasattr(os, "sched_getaffinity") else "cpu_count"
    quota = _cgroup_cpus()
    if quota is not None and math.ceil(quota) < cpus:
        return max(1, math.ceil(quota)), f"cgroup CPU quota {quota:g}"
    return cpus, source


def default_threads() -> int:
    """Threads a scan runs on: torch's intra-op count where torch is loaded (so search and model agree),
    else ``OMP_NUM_THREADS`` (which Ray and job schedulers set), else the CPUs this process may use
    (its affinity mask, capped by the container's cgroup CPU quota)."""
    return _threads()[0]


def _threads() -> tuple[int, str]:
    torch = sys.modules.get("torch")
    cpus, source = available_cpus()
    if torch is not None and hasattr(torch, "get_num_threads"):
        return max(1, min(torch.get_num_threads(), cpus)), "torch.get_num_threads()"
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured), "OMP_NUM_THREADS"
    return cpus, source


_MADV_POPULATE_READ = 22  # Linux >= 5.14
_libc = None


def populate(arrays: list[np.ndarray]) -> bool:
    """Map the pages of memory-mapped ``arrays`` in one system call per array (Linux).

    Faulting a large map in page by page costs about 2 µs per 4 KB page here, which made the
    first query after opening a 3 GB cache take 1.8 s instead of 0.25 s; ``MADV_POPULATE_READ``
    maps the same pages in milliseconds. Harmless where unsupported (returns False).
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            libc.madvise.restype = ctypes.c_int
            _libc = libc
        page = os.sysconf("SC_PAGE_SIZE")
        ok = True
        for array in arrays:
            if array.nbytes == 0:
                continue
            start = array.ctypes.data // page * page
            ok &= _libc.madvise(start, array.ctypes.data + array.nbytes - start, _MADV_POPULATE_READ) == 0
        return ok
    except (OSError, AttributeError, ValueError):
        return False



def load(isa_name: str | None = None) -> _Kernel | None:
    """The kernel for ``isa_name`` (default: the one ``VFS_KERNEL_ISA`` or the CPU chooses), or None
    where it was not built or is disabled (the PyTorch path is used then).

    Raises :class:`KernelError` where an instruction set is forced that this CPU cannot run.
    """
    global isa, reason
    if isa_name is None:
        with _lock:
            cached = _kernels.get("")
        if cached is not None:
            return cached
        chosen, why = _choose()
        isa, reason = chosen, why
        if chosen is None:
            return None
        kernel = load(chosen)
        with _lock:
            _kernels.setdefault("", kernel)
        return kernel
    if isa_name not in ISAS:
        raise KernelError(f"unknown kernel instruction set {isa_name!r}; one of {', '.join(ISAS)}")
    if _disabled():
        return None
    if _library() is None:
        return None
    missing = _missing(isa_name)
    if missing:
        raise KernelError(f"this CPU cannot run the {isa_name} kernel (missing: {', '.join(missing)})")
    with _lock:
        if isa_name not in _kernels:
            _kernels[isa_name] = _Kernel(_library(), isa_name)
        return _kernels[isa_name]


def reset() -> None:
    """Forget the chosen kernel, so that the next :func:`load` reads ``VFS_KERNEL_ISA`` again (tests)."""
    global isa, reason, _warned
    with _lock:
        _kernels.pop("", None)
    isa, reason, _warned = None, "", False


def warn_fallback() -> None:
    """Say once per process that search runs on the PyTorch path because the kernel is missing."""
    global _warned
    if _warned or _disabled():
        return
    _warned = True
    warnings.warn(f"vfs: the fused search kernel is unavailable ({error}); search runs on the slower "
                  "PyTorch path (torch-cpu)", RuntimeWarning, stacklevel=3)


def fallback_note(backend: str) -> str:
    """Text for a search caption: why a CPU search ran on torch, or nothing."""
    if backend != "torch-cpu" or _disabled() or _library() is not None:
        return ""
    return " · fused kernel not built at install: the slower PyTorch path runs"


def info() -> dict:
    """What runs here, for ``vfs info``: CPU features, the kernel's instruction set and why, threads,
    where the kernel was built, torch and CUDA (torch is asked only where it is importable)."""
    failed = False
    try:
        chosen = load()
        chosen_isa, why = (chosen.isa if chosen else None), reason
    except KernelError as exc:
        chosen, chosen_isa, why, failed = None, None, f"{exc}: CPU searches fail until it is unset", True
    path = library_path()
    lib = _library()
    threads, threads_from = _threads()
    cpus, cpus_from = available_cpus()
    out = {
        "machine": platform.machine(), "system": platform.system(), "python": platform.python_version(),
        "cpu_features": cpu_features(),
        "kernel": {
            "built": lib is not None, "path": str(path) if path else None,
            "built_with": lib.vfs_build_info().decode() if lib is not None else None,
            "isas_built": built_isas(), "isas_runnable": runnable_isas(),
            "requested": requested_isa(), "isa": chosen_isa, "reason": why,
            "backend": chosen.backend if chosen else None if failed else "torch-cpu", "error": None if lib is not None else error,
        },
        "threads": {"scan": threads, "from": threads_from, "cpus": cpus, "cpus_from": cpus_from},
    }
    torch_info: dict = {"installed": importlib.util.find_spec("torch") is not None}
    if torch_info["installed"]:
        import torch

        torch_info.update(version=torch.__version__, threads=torch.get_num_threads(),
                          cuda=bool(torch.cuda.is_available()),
                          cuda_devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                          if torch.cuda.is_available() else [])
    out["torch"] = torch_info
    return out
