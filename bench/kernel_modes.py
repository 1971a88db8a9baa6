"""The fused kernel's correlations side by side: each one forced, per instruction set, on a real cache.

    python -m bench.kernel_modes --data DIR [--layer L ...] [--isa avx512,avx2,scalar] [--repeats 9] [--json]

For the four regions of ``bench.search`` (one cell, 3×3, brush stroke; the full grid has one
correlation) and each correlation that fits (``cells``, ``shift``, ``lanes``), it times
``kernel.scan`` over every image of the cache on all cores, interleaved round by round in one
process, and reports the minimum of the wall time and of the CPU time per core, both divided by
the all-cores memory-stream floor of the same rounds, and the same scan on 16 images that stay in
L2 ("arithmetic alone"). ``chosen`` marks the correlation ``NativePlan`` picks: the cost model
is right where the chosen one is the fastest. Nothing is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import MemoryStream, machine, machine_line, timed
from bench.search import DEFAULT_LAYERS, ensure_cache, grid_masks
from vfs.cache.feature_cache import FeatureCache
from vfs.cache.indexing import DEFAULT_CACHE_DIR
from vfs.features.models import load_model
from vfs.similarity import kernel as _native
from vfs.similarity.exact import Query

MODES = ("cells", "shift", "lanes")


def scan_all(kernel, cache: FeatureCache, plan: _native.NativePlan, threads: int) -> None:
    segments = []
    for shard in cache.shards:
        n = len(shard.features)
        segments.append((shard.features, shard.cell_norms2, np.empty(n, np.float32), np.empty(n, np.int64), None))
    kernel.scan(segments, plan, threads=threads)


def resident(kernel, cache: FeatureCache, plan: _native.NativePlan, threads: int):
    """A scan of 16 L2-resident images repeated to the cache's size, as bench.search --breakdown does."""
    shard = cache.shards[0]
    block, norms = np.ascontiguousarray(shard.features[:16]), np.ascontiguousarray(shard.cell_norms2[:16])
    copies = max(threads * 8, len(cache) // len(block))
    best, flat = np.empty(len(block), np.float32), np.empty(len(block), np.int64)
    segments = [(block, norms, best, flat, None)] * copies
    return (lambda: kernel.scan(segments, plan, threads=threads)), len(cache) / (copies * len(block))


def measured(fn, wall: list[float], cpu: list[float]) -> None:
    c0 = time.process_time()
    wall.append(timed(fn))
    cpu.append(time.process_time() - c0)


def bench_layer(cache: FeatureCache, isas: list[str], repeats: int, threads: int) -> dict:
    g, c = cache.grid, cache.channels
    query_grid = cache.features(len(cache) // 2).astype(np.float32)
    stream = MemoryStream([a for s in cache.shards for a in (s.features, s.cell_norms2)], threads)
    runs: dict[tuple, dict] = {}
    for name, m in grid_masks(g).items():
        query = Query(query_grid, m)
        h, w = query.window_shape
        if (h, w) == (g, g):
            continue
        active = int((query.weights > 0).sum())
        for isa in isas:
            kernel = _native.load(isa)
            chosen = _native.NativePlan(query.kernel, query.weights, g, isa=isa).mode
            for mode in MODES:
                if not _native.NativePlan.fits(mode, g, h, w, active, c):
                    continue
                plan = _native.NativePlan(query.kernel, query.weights, g, mode=mode, isa=isa)
                l2, scale = resident(kernel, cache, plan, threads)
                runs[(name, isa, mode)] = {"full": lambda k=kernel, p=plan: scan_all(k, cache, p, threads),
                                           "l2": l2, "scale": scale, "chosen": mode == chosen, "window": [h, w],
                                           "active": active, "t": {"full": ([], []), "l2": ([], [])}}
    floor_wall: list[float] = []
    floor_cpu: list[float] = []
    for run in runs.values():  # warm-up
        run["full"]()
    for _ in range(repeats):
        for key, fn in stream.all().items():  # the all-cores streams, as bench.search's floor
            if key.endswith("_2threads"):
                measured(fn, floor_wall, floor_cpu)
        for run in runs.values():
            for part in ("full", "l2"):
                measured(run[part], *run["t"][part])
    mem_wall, mem_cpu = min(floor_wall), min(floor_cpu) / threads
    rows = []
    for (name, isa, mode), run in runs.items():
        wall, cpu = (min(v) for v in run["t"]["full"])
        l2_wall, l2_cpu = (min(v) * run["scale"] for v in run["t"]["l2"])
        rows.append({"case": name, "window": run["window"], "active": run["active"], "isa": isa, "mode": mode,
                     "chosen": run["chosen"], "ms": round(wall * 1e3, 2), "cpu_ms_per_core": round(cpu / threads * 1e3, 2),
                     "memory_ratio": round(wall / mem_wall, 2), "memory_ratio_cpu": round(cpu / threads / mem_cpu, 2),
                     "l2_memory_ratio": round(l2_wall / mem_wall, 2),
                     "l2_memory_ratio_cpu": round(l2_cpu / threads / mem_cpu, 2)})
    return {"images": len(cache), "channels": c, "grid": g, "memory_ms": round(mem_wall * 1e3, 2),
            "memory_cpu_ms_per_core": round(mem_cpu * 1e3, 2), "rows": rows}


def markdown(report: dict) -> str:
    out = [f"- machine: {machine_line(report['machine'])}", f"- command: `{report['command']}`", ""]
    for layer, res in report["layers"].items():
        title = (f"**{layer}** ({res['images']} images × {res['channels']}×{res['grid']}×{res['grid']}; all-cores "
                 f"memory stream {res['memory_ms']} ms wall, {res['memory_cpu_ms_per_core']} CPU ms per core)")
        out += [title, "",
                "| case | ISA | correlation | ms | ÷ memory | CPU ms/core | CPU ÷ memory | L2-resident ÷ memory (wall / CPU) |",
                "|---|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            mode = f"**{r['mode']}** (chosen)" if r["chosen"] else r["mode"]
            out.append(f"| {r['case']} | {r['isa']} | {mode} | {r['ms']} | {r['memory_ratio']} | {r['cpu_ms_per_core']} | "
                       f"{r['memory_ratio_cpu']} | {r['l2_memory_ratio']} / {r['l2_memory_ratio_cpu']} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The fused kernel's correlations, each forced, per ISA.")
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--layer", action="append")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--isa", default="all", help="comma-separated instruction sets, or 'all' (every one this CPU runs)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=0, help="default: the kernel's own choice")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    info = machine()
    model = load_model(args.model, None, device="cpu")
    layers = args.layer or DEFAULT_LAYERS.get(args.model) or [model.default_layer.name]
    isas = _native.runnable_isas() if args.isa == "all" else [s.strip() for s in args.isa.split(",") if s.strip()]
    threads = args.threads or _native.default_threads()
    report = {"machine": info, "command": "python -m bench.kernel_modes " + " ".join(argv or sys.argv[1:]),
              "layers": {}}
    for layer in layers:
        cache, _ = ensure_cache(Path(args.data), model, layer, Path(args.cache_dir))
        report["layers"][layer] = bench_layer(cache, isas, args.repeats, threads)
    print(json.dumps(report, indent=1) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
