"""Shared pieces of the benchmarks: machine description, timing, memory streaming, RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> dict:
    """CPU model, cores, memory and library versions, for the record."""
    info: dict = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu"] = fields.get("Model name", info["cpu"])
        info["cores"] = int(fields.get("CPU(s)", info["cores"]))
        flags = fields.get("Flags", "").split()
        info["simd"] = " ".join(f for f in ("avx2", "avx512f", "avx512_fp16", "amx_bf16") if f in flags)
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gb"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    import torch

    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]  # the machine is shared: note the load
    except OSError:
        pass
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["numpy"] = np.__version__
    info["python"] = platform.python_version()
    return info


def command_line() -> str:
    return "python -m " + " ".join(shlex.quote(a) for a in [sys.modules["__main__"].__spec__.name, *sys.argv[1:]]) \
        if getattr(sys.modules["__main__"], "__spec__", None) else " ".join(shlex.quote(a) for a in sys.argv)


def now() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


_SUM_SOURCE = r"""
#include <stdint.h>
uint64_t stream_sum(const uint64_t *p, int64_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) { a += p[i]; b += p[i + 1]; c += p[i + 2]; d += p[i + 3]; }
    for (; i < n; i++) a += p[i];
    return a + b + c + d;
}
"""


def _c_sum():
    """A compiled uint64 sum (vectorised by the compiler): a stricter memory floor than numpy's reduce."""
    import ctypes
    import os
    import shutil
    import tempfile

    cc = next((shutil.which(c) for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="vfs-bench-"))
    (folder / "s.c").write_text(_SUM_SOURCE)
    run = subprocess.run([cc, "-O3", "-march=native", "-shared", "-fPIC", str(folder / "s.c"), "-o",
                          str(folder / "s.so")], capture_output=True)
    if run.returncode != 0:
        return None
    lib = ctypes.CDLL(str(folder / "s.so"))
    lib.stream_sum.restype = ctypes.c_uint64
    lib.stream_sum.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    return lib.stream_sum


class MemoryStream:
    """Reading a list of arrays' bytes once at memory speed, without any float conversion.

    ``sum``: the bytes summed as uint64 (numpy, one thread); ``copy``: copied into a
    preallocated buffer (one thread); ``c_sum``: summed as uint64 by a compiled loop (faster than
    numpy's reduce); ``*_2threads``: the same split over ``threads`` threads (numpy and ctypes
    release the GIL), i.e. what all cores can stream.
    """

    def __init__(self, arrays: list[np.ndarray], threads: int = 2):
        self.views = [a.reshape(-1).view(np.uint8) for a in arrays]
        self.nbytes = sum(v.nbytes for v in self.views)
        # the copy target: 64 MB reused (far larger than the caches, so every write goes to memory,
        # but not a second copy of the data in RSS)
        self.buffer = np.empty(min(64 << 20, max(v.nbytes for v in self.views)), np.uint8)
        self.buffer[:] = 0  # fault it in now
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads)
        self._csum = _c_sum()
        self.halves = []
        for v in self.views:
            cut = (v.nbytes // 2) // 64 * 64
            self.halves.append((v[:cut], v[cut:]))

    @staticmethod
    def _sum(v: np.ndarray) -> int:
        words = v[: v.nbytes // 8 * 8].view(np.uint64)
        return int(np.add.reduce(words, dtype=np.uint64)) + int(v[v.nbytes // 8 * 8:].sum())

    def sum(self) -> int:
        return sum(self._sum(v) for v in self.views)

    def _copy(self, v: np.ndarray, buffer: np.ndarray) -> None:
        step = buffer.nbytes
        for start in range(0, v.nbytes, step):
            part = v[start: start + step]
            np.copyto(buffer[: part.nbytes], part)

    def copy(self) -> None:
        for v in self.views:
            self._copy(v, self.buffer)

    def sum2(self) -> int:
        return sum(self.pool.map(lambda half: self._sum(half), [h for pair in self.halves for h in pair]))

    def copy2(self) -> None:
        half = self.buffer.nbytes // 2 // 64 * 64
        buffers = (self.buffer[:half], self.buffer[half: 2 * half])
        jobs = [(h, buffers[i]) for pair in self.halves for i, h in enumerate(pair)]
        list(self.pool.map(lambda job: self._copy(*job), jobs))

    def csum(self) -> int:
        return sum(self._csum(v.ctypes.data, v.nbytes // 8) for v in self.views)

    def csum2(self) -> int:
        return sum(self.pool.map(lambda h: self._csum(h.ctypes.data, h.nbytes // 8),
                                 [h for pair in self.halves for h in pair]))

    def all(self) -> dict[str, Callable[[], object]]:
        out = {"sum": self.sum, "copy": self.copy, "sum_2threads": self.sum2, "copy_2threads": self.copy2}
        if self._csum is not None:  # ctypes releases the GIL: the two halves run in parallel
            out.update({"c_sum": self.csum, "c_sum_2threads": self.csum2})
        return out

    def floor(self, times: dict[str, float], all_cores: bool) -> float:
        """The fastest way measured to read the bytes once, on one thread or on all cores."""
        return min(t for k, t in times.items() if k.endswith("_2threads") == all_cores)


def append_results(title: str, body: str) -> None:
    """Append one section to bench/RESULTS.md (under a file lock: others append too)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                handle.write("# vfs benchmark results\n\nEach section is appended by the benchmark that "
                             "measured it, with its command, date and machine. Ratios are measured side "
                             "by side in one run (minimum over repeats).\n")
            handle.write(f"\n## {title}\n\n{body.rstrip()}\n")
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def machine_line(info: dict) -> str:
    load = info.get("load_average")
    end = ""
    try:
        end = f" → {round(os.getloadavg()[0], 2)} at the end"
    except OSError:
        pass
    return (f"{info.get('cpu')} · {info.get('cores')} CPUs ({info.get('simd', '')}) · "
            f"{info.get('memory_gb', '?')} GB RAM · torch {info.get('torch')} ({info.get('torch_threads')} threads) · "
            f"numpy {info.get('numpy')} · Python {info.get('python')} · load average {load[0] if load else '?'} at "
            f"the start{end} (shared machine: other agents' jobs run alongside)")
