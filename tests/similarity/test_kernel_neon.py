"""The AArch64 NEON path of the fused kernel (and its portable C path built for AArch64),
cross-compiled with a small C driver (tests/similarity/kernel_driver/driver.c) and run under qemu-aarch64
against every window's score in float64, for the cells, shift, lanes and dense correlations.

Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (`make test` installs
them); skipped with the reason where they are absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.similarity.test_search import masks
from vfs.similarity.exact import Query
from vfs.similarity.kernel import MODE_IDS, NativePlan

REPO = Path(__file__).resolve().parents[2]
KERNEL = REPO / "vfs" / "similarity" / "kernel"
CC, QEMU = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
pytestmark = pytest.mark.skipif(CC is None or QEMU is None,
                                reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install "
                                       "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; `make test` does)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aarch64") / "driver"
    # the flags setup.py uses on AArch64: none beyond the base ISA (NEON and float16 conversion)
    done = subprocess.run([CC, "-O2", "-static", "-std=c99", "-fno-math-errno", "-Wall", "-Werror", f"-I{KERNEL}",
                           str(REPO / "tests" / "similarity" / "kernel_driver" / "driver.c"), str(KERNEL / "scan_neon.c"),
                           str(KERNEL / "scan_scalar.c"), "-lm", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def cases(rng: np.random.Generator):
    """(features, norms2, query, mode) for grids with and without tails, several channel blocks."""
    for grid, channels in [(7, 32), (14, 40), (5, 9), (4, 3), (3, 70)]:
        features = rng.standard_normal((6, channels, grid, grid)).astype(np.float16)
        features[2] = 0  # all-zero image: every window scores 0
        f32 = features.astype(np.float32)
        norms2 = np.einsum("ncij,ncij->nij", f32, f32)
        for name, grid_mask in masks(grid, rng).items():
            query = Query(features[0].astype(np.float32) + 0.1 * rng.standard_normal(features[0].shape, np.float32),
                          grid_mask)
            h, w = query.window_shape
            active = int((query.weights > 0).sum())
            modes = ["dense"] if (h, w) == (grid, grid) else [m for m in ("cells", "shift", "lanes")
                                                                if NativePlan.fits(m, grid, h, w, active, channels)]
            for mode in modes:
                yield f"{grid}x{grid}x{channels} {name} {mode}", features, norms2, query, mode


def expected(features: np.ndarray, query: Query) -> np.ndarray:
    f = features.astype(np.float64)
    g = f.shape[-1]
    h, w = query.window_shape
    out = np.zeros((len(f), g - h + 1, g - w + 1))
    for y in range(g - h + 1):
        for x in range(g - w + 1):
            window = f[:, :, y:y + h, x:x + w]
            num = np.einsum("nchw,chw->n", window, query.kernel)
            den = np.sqrt(np.einsum("nchw,hw->n", window**2, query.weights**2))
            out[:, y, x] = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return out


def write_case(path: Path, features, norms2, query: Query, mode: str) -> None:
    n, c, g, _ = features.shape
    plan = NativePlan(query.kernel, query.weights, g, mode=mode, isa="neon")
    header = np.array([n, c, g, plan.h, plan.w, plan.k, MODE_IDS[plan.mode], plan.kern.size], np.int32)
    with open(path, "wb") as handle:
        for array in (header, features.astype(np.float16), norms2.astype(np.float32), plan.off, plan.msq,
                      plan.kern, plan.kern_t):
            handle.write(np.ascontiguousarray(array).tobytes())


@pytest.mark.parametrize("isa", ["neon", "scalar"])
def test_aarch64_kernel_equals_float64_under_qemu(driver, tmp_path, isa):
    rng = np.random.default_rng(11)
    todo = list(cases(rng))
    assert len(todo) > 40
    args = []
    for i, (_, features, norms2, query, mode) in enumerate(todo):
        write_case(tmp_path / f"in{i}", features, norms2, query, mode)
        args += [str(tmp_path / f"in{i}"), str(tmp_path / f"out{i}")]
    done = subprocess.run([QEMU, str(driver), isa, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for i, (label, features, _, query, mode) in enumerate(todo):
        want = expected(features, query)
        n, windows = want.shape[0], want[0].size
        raw = (tmp_path / f"out{i}").read_bytes()
        scores = np.frombuffer(raw, np.float32, n * windows).reshape(want.shape)
        best = np.frombuffer(raw, np.float32, n, offset=4 * n * windows)
        flat = np.frombuffer(raw, np.int64, n, offset=4 * n * windows + 4 * n)
        np.testing.assert_allclose(scores, want, atol=2e-6, err_msg=f"{isa} {label}")
        np.testing.assert_array_equal(best, scores.reshape(n, -1).max(axis=1), err_msg=label)
        np.testing.assert_array_equal(flat, scores.reshape(n, -1).argmax(axis=1), err_msg=label)
        assert np.all(scores[2] == 0), label  # the all-zero image
