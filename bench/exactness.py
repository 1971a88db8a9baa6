"""Exactness of every search kernel against a float64 brute force.

    python -m bench.exactness [--seed 0] [--cases 300]

Random float16 features (with zero cells, zero images and wide dynamic range), soft, irregular,
border, one-cell and full-grid masks, grids 1..16. For every kernel (the fused CPU kernel and
the PyTorch strategies dense/cells/conv) it checks each window's score against float64 within
1e-5 and that each image's reported best window is a maximal one (ties within 1e-6 allowed) and
the first of the exact ties, and that the fused kernel's results are bit-identical however the
images are split into shards and threads. Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from vfs.cache.feature_cache import cell_norms2
from vfs.similarity import kernel as _native
from vfs.similarity.exact import Query, TorchBackend


def oracle(features: np.ndarray, query: Query) -> np.ndarray:
    """(n, C, G, G) float16 -> (n, H', W') float64 cosines, computed window by window."""
    f = features.astype(np.float64)
    top, left, bottom, right = query.bounds
    m = query.weights
    q = query.features[:, top:bottom, left:right].astype(np.float64) * m
    qn = np.sqrt((q**2).sum())
    h, w = m.shape
    g = features.shape[-1]
    out = np.zeros((len(f), g - h + 1, g - w + 1))
    for y in range(g - h + 1):
        for x in range(g - w + 1):
            win = f[:, :, y:y + h, x:x + w] * m
            num = (win * q).sum(axis=(1, 2, 3))
            den = np.sqrt((win**2).sum(axis=(1, 2, 3))) * qn
            out[:, y, x] = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return out


def fused_scores(features: np.ndarray, norms: np.ndarray, query: Query, mode: str) -> np.ndarray:
    """Every window's score from the fused kernel with its correlation forced to ``mode``."""
    g = features.shape[-1]
    h, w = query.window_shape
    plan = _native.NativePlan(query.kernel, query.weights, g, mode=mode, isa=_native.load().isa)
    n = len(features)
    out = np.empty((n, g - h + 1, g - w + 1), np.float32)
    _native.load().scan([(features, norms, np.empty(n, np.float32), np.empty(n, np.int64), out)], plan, threads=2)
    return out


def random_mask(rng: np.random.Generator, g: int, kind: str) -> np.ndarray:
    m = np.zeros((g, g), np.float32)
    if kind == "cell":
        m[rng.integers(g), rng.integers(g)] = 1
    elif kind == "full":
        m[:] = 1
    elif kind == "border":  # touching an edge, soft
        h, w = rng.integers(1, g + 1, size=2)
        top = 0 if rng.random() < 0.5 else g - h
        left = 0 if rng.random() < 0.5 else g - w
        m[top:top + h, left:left + w] = rng.uniform(0.05, 1, size=(h, w))
    elif kind == "soft-full":
        m[:] = rng.uniform(0, 1, size=(g, g)) * (rng.random((g, g)) < 0.7)
    else:  # irregular brush stroke: a random walk of soft cells
        y, x = rng.integers(g, size=2)
        for _ in range(rng.integers(1, 2 * g + 1)):
            m[y, x] = max(m[y, x], rng.uniform(0.1, 1))
            y = int(np.clip(y + rng.integers(-1, 2), 0, g - 1))
            x = int(np.clip(x + rng.integers(-1, 2), 0, g - 1))
    if m.max() == 0:
        m[0, 0] = 1
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=300)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    kernels = {"fused": TorchBackend("cpu", "fused") if _native.load() is not None else None,
               "dense": TorchBackend("cpu", "dense"), "cells": TorchBackend("cpu", "cells"),
               "conv": TorchBackend("cpu", "conv")}
    if kernels["fused"] is None:
        print(f"fused kernel unavailable: {_native.error}", file=sys.stderr)
        del kernels["fused"]
    worst = {name: 0.0 for name in kernels}
    failures: list[str] = []
    started = time.perf_counter()
    kinds = ["cell", "full", "border", "soft-full", "stroke", "3x3"]
    for case in range(args.cases):
        g = int(rng.choice([1, 2, 3, 5, 7, 7, 7, 8, 14, 14, 16]))
        c = int(rng.choice([1, 3, 16, 33, 112, 320]))
        n = int(rng.integers(1, 90))
        scale = 10.0 ** rng.uniform(-3, 2)
        feats = (rng.standard_normal((n, c, g, g)) * scale)
        if rng.random() < 0.5:
            feats = np.abs(feats)  # post-ReLU-like: all scores positive, many near-ties
        feats *= rng.random((n, 1, g, g)) >= 0.15  # zero cells
        feats[rng.random(n) < 0.05] = 0  # all-zero images
        feats = feats.astype(np.float16)
        kind = kinds[case % len(kinds)]
        if kind == "3x3":
            mask = np.zeros((g, g), np.float32)
            top, left = rng.integers(0, max(1, g - 2), size=2)
            mask[top:top + 3, left:left + 3] = 1
        else:
            mask = random_mask(rng, g, kind)
        qf = feats[rng.integers(n)].astype(np.float32)
        if not np.any(qf * (mask > 0)):
            qf = (np.abs(rng.standard_normal((c, g, g))) + 0.1).astype(np.float16).astype(np.float32)
        query = Query(qf, mask)
        norms = cell_norms2(feats)
        truth = oracle(feats, query)
        flat_truth = truth.reshape(n, -1)
        if "fused" in kernels and query.window_shape != (g, g):  # every correlation of the fused kernel, forced
            for mode in ("cells", "shift", "lanes"):
                if not _native.NativePlan.fits(mode, g, *query.window_shape, int((query.weights > 0).sum()), c):
                    continue
                got = fused_scores(feats, norms, query, mode).astype(np.float64)
                err = float(np.abs(got - truth).max())
                worst[f"fused-{mode}"] = max(worst.get(f"fused-{mode}", 0.0), err)
                if err > 1e-5:
                    failures.append(f"case {case} fused-{mode} g={g} c={c} mask={kind}: score error {err:.2e}")
        for name, backend in kernels.items():
            if name == "dense" and query.window_shape != (g, g):
                continue  # the dense strategy only takes regions whose box is the whole grid
            got = backend.window_scores(feats, norms, query).astype(np.float64)
            err = float(np.abs(got - truth).max())
            worst[name] = max(worst[name], err)
            if err > 1e-5:
                failures.append(f"case {case} {name} g={g} c={c} mask={kind}: score error {err:.2e}")
        # best_windows through a real FeatureCache-like object: one or two shards
        if "fused" in kernels:
            cache = _FakeCache(feats, norms, g, c, split=int(rng.integers(0, n + 1)))
            best, flat = kernels["fused"].best_windows(cache, query)
            whole, whole_flat = kernels["fused"].best_windows(_FakeCache(feats, norms, g, c, split=n), query)
            if not (np.array_equal(best, whole) and np.array_equal(flat, whole_flat)):
                failures.append(f"case {case} fused results depend on the shard split (not bit-identical)")
            best_truth = flat_truth.max(axis=1)
            if np.abs(best - best_truth).max() > 1e-5:
                failures.append(f"case {case} fused best score off by {np.abs(best - best_truth).max():.2e}")
            picked = flat_truth[np.arange(n), flat]
            if (best_truth - picked).max() > 1e-6:
                failures.append(f"case {case} fused picked a non-maximal window")
            # first maximum: no earlier window may beat the picked one by more than rounding
            for i in range(n):
                earlier = flat_truth[i, :flat[i]]
                if earlier.size and earlier.max() > picked[i] + 1e-6:
                    failures.append(f"case {case} image {i}: an earlier window is better")
                    break
    report = {"cases": args.cases, "seconds": round(time.perf_counter() - started, 1),
              "max_abs_error_vs_float64": {k: float(f"{v:.3g}") for k, v in worst.items()},
              "failures": failures[:20], "n_failures": len(failures),
              "fused_kernel": str(_native.load().path) if _native.load() else _native.error}
    print(json.dumps(report, indent=2))
    return 1 if failures else 0


class _FakeCache:
    """Just enough of FeatureCache for best_windows: shards with offsets."""

    class _Shard:
        def __init__(self, offset: int, features: np.ndarray, norms: np.ndarray):
            self.offset, self.features, self.cell_norms2 = offset, features, norms

    def __init__(self, feats: np.ndarray, norms: np.ndarray, g: int, c: int, split: int):
        self.grid, self.channels = g, c
        self.shards = [self._Shard(0, feats[:split], norms[:split]), self._Shard(split, feats[split:], norms[split:])]
        self.shards = [s for s in self.shards if len(s.features)]
        self._n = len(feats)

    def __len__(self) -> int:
        return self._n


if __name__ == "__main__":
    sys.exit(main())
