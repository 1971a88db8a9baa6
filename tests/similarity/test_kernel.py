"""The fused kernel on every instruction set this machine runs (AVX-512, AVX2, portable C) against
the float64 brute force; run-time dispatch, VFS_KERNEL_ISA, the PyTorch fallback and `vfs info`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.similarity.test_search import masks
from tests.support.data import write_cache
from tests.support.oracle import brute_force
from vfs.errors import VfsError
from vfs.similarity import kernel as _native
from vfs.similarity.exact import Query, TorchBackend, get_backend, list_backends, search

REPO = Path(__file__).resolve().parents[2]
RUNNABLE = _native.runnable_isas()
ISAS = [pytest.param(isa, marks=pytest.mark.skipif(isa not in RUNNABLE, reason=f"this CPU cannot run {isa}"))
        for isa in ("avx512", "avx2", "scalar")]
pytestmark = pytest.mark.skipif(_native.load() is None, reason=f"the fused kernel is not built ({_native.error})")


def features_for(n: int, channels: int, grid: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, channels, grid, grid)).astype(np.float16)
    features[1] = 0  # an all-zero image: every window scores 0
    return features


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("grid,channels", [(7, 24), (5, 9), (3, 4), (10, 6), (14, 40)])
def test_every_isa_equals_brute_force(tmp_path, isa, grid, channels):
    """Small grids take the register-only cells kernel, 14×14 with 40 channels several channel blocks
    through the scratch; 5×5 and 3×3 have long or no full vectors."""
    features = features_for(9, channels, grid, seed=grid * 100 + channels)
    cache = write_cache(tmp_path / "c", features, shard_rows=4)
    backend = get_backend(f"fused-{isa}")
    rng = np.random.default_rng(1)
    for name, grid_mask in masks(grid, rng).items():
        if grid_mask.max() == 0:
            continue
        query = Query(features[3].astype(np.float32) + 0.1 * rng.standard_normal(features[3].shape, np.float32),
                      grid_mask)
        result = search(cache, query, top_k=9, backend=backend)
        assert result.backend == f"fused-{isa}"
        expected_scores, expected_windows = brute_force(features, query.features, grid_mask)
        np.testing.assert_allclose(result.scores, expected_scores, atol=2e-6, err_msg=f"{isa} {name}")
        close = np.abs(np.sort(expected_scores)[::-1][:9] - result.scores[[m.index for m in result.matches]]).max()
        assert close < 2e-6
        for i in range(len(features)):  # windows agree unless two windows tie within rounding
            if i != 1 and tuple(result.windows[i]) != tuple(expected_windows[i]):
                y, x = result.windows[i]
                assert abs(backend.window_scores(features[i:i + 1], _norms(features[i:i + 1]), query)[0, y, x]
                           - expected_scores[i]) < 2e-6


def _norms(features: np.ndarray) -> np.ndarray:
    f = features.astype(np.float32)
    return np.einsum("ncij,ncij->nij", f, f)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", ["cells", "shift", "lanes"])
@pytest.mark.parametrize("grid,channels", [(7, 32), (14, 40), (4, 3), (9, 21), (7, 320), (14, 112)])
def test_every_correlation_forced_gives_every_window(isa, mode, grid, channels):
    """Every window's score, with the kernel's correlation forced, against float64: channel counts
    that are and are not multiples of 16 (lanes: a partly filled last block), grids whose cells are
    not a multiple of the vector width (lanes: cells transposed one by one), every window to the borders."""
    features = features_for(5, channels, grid, seed=7)
    norms = _norms(features)
    rng = np.random.default_rng(2)
    kernel = _native.load(isa)
    for name, grid_mask in masks(grid, rng).items():
        query = Query(features[0].astype(np.float32), grid_mask)
        h, w = query.window_shape
        if (h, w) == (grid, grid) or not _native.NativePlan.fits(mode, grid, h, w, int((query.weights > 0).sum()),
                                                                  channels):
            continue
        plan = _native.NativePlan(query.kernel, query.weights, grid, mode=mode, isa=isa)
        out = np.empty((len(features), grid - h + 1, grid - w + 1), np.float32)
        best, flat = np.empty(len(features), np.float32), np.empty(len(features), np.int64)
        kernel.scan([(features, norms, best, flat, out)], plan, threads=2)
        f = features.astype(np.float64)
        m = query.weights
        k = query.kernel
        for y in range(grid - h + 1):
            for x in range(grid - w + 1):
                window = f[:, :, y:y + h, x:x + w]
                num = np.einsum("nchw,chw->n", window, k)
                den = np.sqrt(np.einsum("nchw,hw->n", window**2, m**2))
                want = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
                np.testing.assert_allclose(out[:, y, x], want, atol=2e-6, err_msg=f"{isa} {mode} {name} ({y},{x})")
        np.testing.assert_array_equal(best, out.reshape(len(features), -1).max(axis=1))


@pytest.mark.parametrize("isa", _native.ISAS)
def test_the_plan_takes_lanes_for_a_brush_stroke_and_keeps_cells_for_one_cell(isa):
    """A stroke in an 8×8 box at 14×14 (22 cells, 49 windows) has the fewest multiply-adds with
    channels in lanes on every ISA; one cell at 7×7 keeps the register-only cells kernel or shift."""
    stroke = np.zeros((14, 14), np.float32)
    for i in range(8):
        stroke[3 + i, 3 + max(0, i - 1):3 + min(8, i + 2)] = 0.5
    query = Query(np.ones((112, 14, 14), np.float32), stroke)
    assert query.window_shape == (8, 8) and int((query.weights > 0).sum()) == 22
    assert _native.NativePlan(query.kernel, query.weights, 14, isa=isa).mode == "lanes"
    one = np.zeros((7, 7), np.float32)
    one[3, 3] = 1
    query = Query(np.ones((320, 7, 7), np.float32), one)
    assert _native.NativePlan(query.kernel, query.weights, 7, isa=isa).mode in ("cells", "shift")


@pytest.mark.parametrize("isa", ISAS)
def test_scores_do_not_depend_on_shards_or_threads(tmp_path, isa):
    features = features_for(300, 16, 7, seed=3)
    query = Query(features[5].astype(np.float32), masks(7, np.random.default_rng(0))["irregular stroke"])
    backend = get_backend(f"fused-{isa}")
    one = search(write_cache(tmp_path / "one", features, shard_rows=300), query, top_k=5, backend=backend)
    many = search(write_cache(tmp_path / "many", features, shard_rows=37), query, top_k=5, backend=backend)
    np.testing.assert_array_equal(one.scores, many.scores)
    np.testing.assert_array_equal(one.windows, many.windows)


@pytest.mark.torch  # against the PyTorch scan
def test_default_is_the_widest_runnable_isa_and_search_names_it(tmp_path):
    assert RUNNABLE[-1] == "scalar" and _native.load().isa == RUNNABLE[0] or os.environ.get("VFS_KERNEL_ISA")
    cache = write_cache(tmp_path / "c", features_for(6, 8, 7, seed=4))
    result = search(cache, Query(cache.features(0).astype(np.float32), np.ones((7, 7), np.float32)), top_k=3,
                    backend="torch-cpu")
    assert result.backend == _native.load().backend == f"fused-{_native.load().isa}"
    chunked = search(cache, Query(cache.features(0).astype(np.float32), np.ones((7, 7), np.float32)), top_k=3,
                     backend=TorchBackend("cpu", strategy="dense"))
    assert chunked.backend == "torch-cpu"
    assert {f"fused-{isa}" for isa in RUNNABLE} | {"torch-cpu", "torch-cuda"} <= set(list_backends())


def test_an_isa_the_cpu_lacks_is_a_clear_error():
    missing = [isa for isa in _native.ISAS if isa not in RUNNABLE]
    assert missing  # NEON on x86, AVX on ARM
    for isa in missing:
        assert f"fused-{isa}" not in list_backends()
        with pytest.raises(VfsError, match=isa):
            get_backend(f"fused-{isa}")


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, **env})


SEARCH = r"""
import json, numpy as np
from vfs.similarity.exact import Query, TorchBackend
from vfs.similarity import kernel
rng = np.random.default_rng(0)
f = rng.standard_normal((4, 8, 7, 7)).astype(np.float16)
n2 = np.einsum("ncij,ncij->nij", f.astype(np.float32), f.astype(np.float32))
mask = np.zeros((7, 7), np.float32); mask[2:5, 1:4] = 1
scores = TorchBackend("cpu").window_scores(f, n2, Query(f[0].astype(np.float32), mask))
print(json.dumps({"isa": kernel.isa, "reason": kernel.reason, "best": float(scores.max())}))
"""


@pytest.mark.parametrize("isa", [isa for isa in ("avx512", "avx2", "scalar") if isa in RUNNABLE])
def test_vfs_kernel_isa_forces_the_instruction_set(isa):
    done = run(SEARCH, VFS_KERNEL_ISA=isa)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["isa"] == isa and "VFS_KERNEL_ISA" in got["reason"] and abs(got["best"] - 1.0) < 1e-6


@pytest.mark.parametrize("value", ["neon" if "neon" not in RUNNABLE else "avx512", "sse9"])
def test_forcing_what_cannot_run_fails_clearly(value):
    done = run(SEARCH, VFS_KERNEL_ISA=value)
    assert done.returncode != 0
    assert f"VFS_KERNEL_ISA={value!r}" in done.stderr or f"VFS_KERNEL_ISA={value}" in done.stderr


@pytest.mark.torch
def test_without_the_built_kernel_search_runs_on_torch_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_lib_tried", True)
    monkeypatch.setattr(_native, "error", "the fused kernel was not built when vfs was installed")
    monkeypatch.setattr(_native, "_kernels", {})
    monkeypatch.setattr(_native, "_warned", False)
    cache = write_cache(tmp_path / "c", features_for(6, 8, 7, seed=5))
    query = Query(cache.features(2).astype(np.float32), masks(7, np.random.default_rng(0))["3x3"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = search(cache, query, top_k=3)
        second = search(cache, query, top_k=3)
    said = [w for w in caught if "fused search kernel is unavailable" in str(w.message)]
    assert len(said) == 1 and first.backend == second.backend == "torch-cpu"
    assert "not built" in _native.fallback_note(first.backend) and _native.fallback_note("fused-avx2") == ""
    assert first.matches[0].index == 2
    assert [b for b in list_backends() if b.startswith("fused-")] == []
    with pytest.raises(VfsError, match="unavailable"):
        get_backend("fused-scalar")


def test_threads_honour_a_cgroup_quota(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(_native, "_cgroup_cpus", lambda: 0.5)
    assert _native.available_cpus() == (1, "cgroup CPU quota 0.5")
    monkeypatch.setattr(_native, "_cgroup_cpus", lambda: None)
    assert _native.available_cpus()[0] == cpus
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert _native.default_threads() == cpus


def test_vfs_info_json_names_what_runs_and_why():
    done = subprocess.run([sys.executable, "-m", "vfs.cli", "info", "--json"], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**os.environ, "VFS_KERNEL_ISA": "avx2"}
                          if "avx2" in RUNNABLE else dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    kernel = got["kernel"]
    assert kernel["built"] and kernel["path"].endswith(Path(kernel["path"]).name) and kernel["built_with"]
    assert set(kernel["isas_runnable"]) == set(RUNNABLE) and "scalar" in kernel["isas_built"]
    if "avx2" in RUNNABLE:
        assert kernel["isa"] == "avx2" and kernel["backend"] == "fused-avx2" and "VFS_KERNEL_ISA" in kernel["reason"]
        assert got["cpu_features"]["avx2"] and got["cpu_features"]["fma"] and got["cpu_features"]["f16c"]
    assert got["threads"]["scan"] >= 1 and got["threads"]["cpus"] >= 1
    # torch is reported as it is here: where it is installed, with CUDA's state
    assert got["torch"] == {"installed": False} if importlib.util.find_spec("torch") is None else "cuda" in got["torch"]
    text = subprocess.run([sys.executable, "-m", "vfs.cli", "info"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert text.returncode == 0 and "search backend: fused-" in text.stdout
