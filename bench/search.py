"""Benchmarks 1 and 2: search against the reference implementation and against the memory limit.

    python -m bench.search --data DIR [--model M] [--layer L ...] [--isa all|ISA,...] [--json] [--no-append]

For each layer (default for tf_efficientnet_lite0: blocks.6, 320×7×7, and blocks.4, 112×14×14;
otherwise the model's default layer) the cache of DIR is built if missing (``vfs.build_index``)
and memory-mapped. For four grid masks (one cell, 3×3 cells, an irregular soft brush stroke
drawn in pixels and area-averaged onto the grid, the full grid) and a few query images taken
from the cache, it measures side by side in one process (the fused searches and the memory streams
interleaved round by round, then PyTorch's and the reference's rounds):

* ``vfs``: ``vfs.similarity.exact.search(cache, query, top_k=20)`` (the default CPU backend: the fused
  kernel when it was built, on the instruction set the CPU or ``VFS_KERNEL_ISA`` chooses), whole
  call including ranking and match boxes; with ``--isa avx512,avx2,scalar`` (or ``all``: every
  instruction set this CPU runs) the same search on each ISA's ``fused-<isa>`` backend, timed in
  the same rounds (``per_isa`` of each case; the first ISA fills the case's own figures);
* ``torch``: the same search through the chunked PyTorch path (``TorchBackend`` with the
  strategy ``_Plan`` picks), for comparison;
* ``reference``: ``visualfeaturesearch.searchtool.CachedSearchTool.compute`` fed the same
  float16 features as an in-memory (N, C, G, G) array, the same float32 query grid and the same
  grid mask, plus its top-20 ranking;
* ``memory``: reading the features and cell norms the search reads, once, at memory speed:
  summing them as uint64 and copying them into a preallocated buffer (one thread, numpy), and the
  same over all cores.

Every figure is the minimum over repeats; the fused ISAs' searches of a mask run in an order that rotates round by
round, and PyTorch's and the reference's rounds come after all of theirs (PyTorch's worker threads spin on the cores
for a while after its search and slowed whatever ran next). Top-20 results (image and window) of vfs and the
reference are compared for every query and mask, and their scores for every image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench._common import MemoryStream, append_results, command_line, machine, machine_line, now, timed
from vfs.cache.feature_cache import FeatureCache, cache_path
from vfs.cache.indexing import DEFAULT_CACHE_DIR, build_index, cache_spec
from vfs.features.geometry import mask_to_grid
from vfs.features.models import load_model
from vfs.similarity import kernel as _native
from vfs.similarity.exact import Query, TorchBackend, _Plan, search

DEFAULT_LAYERS = {"tf_efficientnet_lite0": ["blocks.6", "blocks.4"]}
TOP_K = 20


def grid_masks(grid: int) -> dict[str, np.ndarray]:
    """The four regions of the benchmark on a G×G grid."""
    from PIL import Image, ImageDraw

    c = grid // 2
    one = np.zeros((grid, grid), np.float32)
    one[c, c] = 1
    block = np.zeros((grid, grid), np.float32)
    lo = max(0, c - 1)
    block[lo:lo + 3, lo:lo + 3] = 1
    size = 448  # a brush stroke drawn in pixels, area-averaged onto the grid: soft, irregular weights
    canvas = Image.new("L", (size, size), 0)
    points = [(0.18, 0.30), (0.30, 0.46), (0.45, 0.43), (0.55, 0.58), (0.63, 0.70)]
    ImageDraw.Draw(canvas).line([(x * size, y * size) for x, y in points], fill=255, width=int(0.07 * size),
                                joint="curve")
    stroke = mask_to_grid(np.asarray(canvas, np.float32) / 255.0, grid)
    stroke[stroke < 1e-6] = 0
    return {"one cell": one, "3x3": block, "brush stroke": stroke, "full grid": np.ones((grid, grid), np.float32)}


def reference_tool(features: np.ndarray):
    from visualfeaturesearch.searchtool import CachedSearchTool

    return CachedSearchTool(None, features, "cpu", batch_size=500)


def reference_search(tool, query_features: np.ndarray, grid_mask: np.ndarray):
    """The reference's scores, windows and top-k (ties by dataset order, as vfs breaks them)."""
    tool._query_features = torch.from_numpy(query_features)[None]  # set_input_image runs a model; feed features
    sims, xs, ys = tool.compute(grid_mask)
    sims = sims.numpy()
    order = np.lexsort((np.arange(len(sims)), -sims))[:TOP_K]
    return sims, xs.numpy(), ys.numpy(), order


def ensure_cache(data: Path, model, layer: str, cache_dir: Path) -> tuple[FeatureCache, dict]:
    info = model.layer(layer)
    spec = cache_spec(model, info)
    summary = build_index(data, model, info, cache_dir=cache_dir)
    cache = FeatureCache.open(cache_path(cache_dir, data, spec), data)
    return cache, {"indexed_now": summary.indexed, "index_seconds": round(summary.seconds, 1)}


def case_figures(t_vfs: float, t_ref: float, t_torch: float, mem_1: float, mem_all: float) -> dict:
    return {"vfs_ms": round(t_vfs * 1e3, 2), "speedup_vs_reference": round(t_ref / t_vfs, 1),
            "speedup_vs_torch_chunked": round(t_torch / t_vfs, 2), "memory_stream_ratio": round(t_vfs / mem_1, 2),
            "memory_stream_ratio_all_cores": round(t_vfs / mem_all, 2)}


def cpu_timed(fn, into: list[float]) -> float:
    """Wall seconds of ``fn()``; its process CPU seconds (every thread) are appended to ``into``.
    On a machine other jobs share, CPU time is what the work itself costs: wall time also holds the
    time the scan's threads waited for a core."""
    c0 = time.process_time()
    took = timed(fn)
    into.append(time.process_time() - c0)
    return took


def compute_bound_ms(isa: str, cache: FeatureCache, query: Query, images: int, threads: int, repeats: int) -> float:
    """The kernel alone on 16 images that stay in each core's L2 cache, scanned over and over to make
    ``images``: its time with (almost) no memory traffic, i.e. the cycles of the arithmetic itself."""
    shard = cache.shards[0]
    block, norms = np.ascontiguousarray(shard.features[:16]), np.ascontiguousarray(shard.cell_norms2[:16])
    plan = _native.NativePlan(query.kernel, query.weights, cache.grid, isa=isa)
    copies = max(threads * 8, images // len(block))
    best, flat = np.empty(len(block), np.float32), np.empty(len(block), np.int64)
    segments = [(block, norms, best, flat, None)] * copies
    kernel = _native.load(isa)
    kernel.scan(segments[: threads * 8], plan, threads=threads)
    cpu: list[float] = []
    took = min(cpu_timed(lambda: kernel.scan(segments, plan, threads=threads), cpu) for _ in range(repeats))
    scale = images / (copies * len(block)) * 1e3
    return took * scale, min(cpu) * scale / threads


def bench_layer(cache: FeatureCache, queries: int, repeats: int, ref_repeats: int, threads: int,
                isas: list[str], breakdown: bool = False) -> dict:
    n, c, g = len(cache), cache.channels, cache.grid
    masks = grid_masks(g)
    picks = [int(round(n * (i + 1) / (queries + 1))) for i in range(queries)]
    qfeats = [cache.features(i).astype(np.float32) for i in picks]
    ref_feats = np.concatenate([s.features for s in cache.shards])  # the same float16 values, in RAM
    tool = reference_tool(ref_feats)
    engines = {isa: TorchBackend("cpu", "fused", isa=isa) for isa in isas} or {"torch": TorchBackend("cpu")}
    stream = MemoryStream([a for s in cache.shards for a in (s.features, s.cell_norms2)], threads)
    plans = {name: _Plan(Query(qfeats[0], m), g, torch.device("cpu")).strategy for name, m in masks.items()}
    chunked = {name: TorchBackend("cpu", strategy=plans[name]) for name in masks}

    # correctness: every query and mask against the reference
    checks: dict[str, dict[str, dict]] = {name: {} for name in masks}
    for name, m in masks.items():
        per = {isa: {"identical": True, "top": 0.0, "all": 0.0, "details": []} for isa in engines}
        for qi, qf in enumerate(qfeats):
            query = Query(qf, m)
            sims, xs, ys, order = reference_search(tool, qf, m)
            theirs = [(int(i), int(ys[i]), int(xs[i])) for i in order]
            for isa, engine in engines.items():
                ours = search(cache, query, top_k=TOP_K, backend=engine)
                mine = [(mt.index, mt.window[0], mt.window[1]) for mt in ours.matches]
                if mine != theirs:
                    per[isa]["identical"] = False
                    per[isa]["details"].append({"query": picks[qi], "vfs": mine[:5], "reference": theirs[:5]})
                per[isa]["top"] = max(per[isa]["top"], max(abs(mt.score - float(sims[mt.index])) for mt in ours.matches))
                per[isa]["all"] = max(per[isa]["all"], float(np.abs(ours.scores.astype(np.float64) - sims).max()))
        for isa, got in per.items():
            checks[name][isa] = {"topk_identical": got["identical"], "max_score_diff_topk": got["top"],
                                 "max_score_diff_all_images": got["all"], "mismatches": got["details"]}

    # timing: interleaved rounds, minimum over rounds
    times: dict[str, dict[str, list[float]]] = {name: {"torch": [], "reference": [], **{isa: [] for isa in engines}}
                                                for name in masks}
    memory: dict[str, list[float]] = {k: [] for k in stream.all()}
    memory_cpu: dict[str, list[float]] = {k: [] for k in stream.all()}
    cpu: dict[str, dict[str, list[float]]] = {name: {k: [] for k in times[name]} for name in masks}
    queries_by_mask = {name: Query(qfeats[0], m) for name, m in masks.items()}
    for name, q in queries_by_mask.items():  # warm-up: page faults of the map, kernel build, torch init
        for engine in engines.values():
            search(cache, q, top_k=TOP_K, backend=engine)
        search(cache, q, top_k=TOP_K, backend=chunked[name])
    for fn in stream.all().values():
        fn()
    for r in range(repeats):
        for key, fn in stream.all().items():
            memory[key].append(cpu_timed(fn, memory_cpu[key]))
        for name, q in queries_by_mask.items():
            contenders = list(engines.items())
            shift = r % len(contenders)  # each ISA in every position in turn
            for key, engine in contenders[shift:] + contenders[:shift]:
                times[name][key].append(cpu_timed(lambda engine=engine: search(cache, q, top_k=TOP_K, backend=engine),
                                                  cpu[name][key]))
    # PyTorch's and the reference's rounds come after: PyTorch's worker threads keep spinning on the cores after
    # its search, so a fused scan timed after it ran up to 1.6× slower (measured: the 7×7 full grid 7.8 ms after
    # it, 3.6 ms without it)
    for r in range(repeats):
        for name, q in queries_by_mask.items():
            times[name]["torch"].append(cpu_timed(lambda: search(cache, q, top_k=TOP_K, backend=chunked[name]),
                                                  cpu[name]["torch"]))
            if r < ref_repeats:
                times[name]["reference"].append(timed(lambda: reference_search(tool, qfeats[0], masks[name])))
    mem = {k: min(v) for k, v in memory.items()}
    mem_1 = stream.floor(mem, all_cores=False)  # the strictest one-thread read: numpy sum, copy or C sum
    mem_all = stream.floor(mem, all_cores=True)
    # the same floor in CPU time per core (robust to other jobs): the all-cores streams' CPU / threads
    mem_all_cpu = stream.floor({k: min(v) / (threads if k.endswith("_2threads") else 1)
                                for k, v in memory_cpu.items()}, all_cores=True)
    cases = {}
    for name, m in masks.items():
        t = {k: min(v) for k, v in times[name].items()}
        top, left, bottom, right = Query(qfeats[0], m).bounds
        per_isa = {isa: {**case_figures(t[isa], t["reference"], t["torch"], mem_1, mem_all), **checks[name][isa]}
                   for isa in engines}
        for isa in engines:  # CPU time per core: what the ratios are without the other jobs' share of the cores
            per_isa[isa].update(vfs_cpu_ms_per_core=round(min(cpu[name][isa]) / threads * 1e3, 2),
                                memory_stream_ratio_all_cores_cpu=round(min(cpu[name][isa]) / threads / mem_all_cpu, 2),
                                speedup_vs_torch_chunked_cpu=round(min(cpu[name]["torch"]) / min(cpu[name][isa]), 2))
        if breakdown:  # where the time goes: the arithmetic alone (cache-resident) against the memory floor
            for isa in engines:
                if isa in _native.ISAS:
                    alone, alone_cpu = compute_bound_ms(isa, cache, Query(qfeats[0], m), n, threads, repeats)
                    per_isa[isa].update(kernel_compute_bound_ms=round(alone, 2),
                                        compute_bound_ratio_all_cores=round(alone / 1e3 / mem_all, 2),
                                        kernel_compute_bound_cpu_ms_per_core=round(alone_cpu, 2),
                                        compute_bound_ratio_all_cores_cpu=round(alone_cpu / 1e3 / mem_all_cpu, 2))
        first = next(iter(engines))
        cases[name] = {
            "window": [bottom - top, right - left], "active_cells": int((m > 0).sum()),
            "torch_strategy": plans[name], "kernel_isa": first,
            "torch_chunked_ms": round(t["torch"] * 1e3, 2), "reference_ms": round(t["reference"] * 1e3, 1),
            "torch_chunked_memory_stream_ratio": round(t["torch"] / mem_1, 2),
            "torch_chunked_memory_stream_ratio_all_cores": round(t["torch"] / mem_all, 2),
            **per_isa[first], "per_isa": per_isa,
        }
    return {"images": n, "channels": c, "grid": g, "feature_bytes": int(sum(s.features.nbytes for s in cache.shards)),
            "bytes_read": stream.nbytes, "queries": picks,
            "memory_ms": {k: round(v * 1e3, 2) for k, v in mem.items()},
            "memory_all_cores_cpu_ms_per_core": round(mem_all_cpu * 1e3, 2),
            "memory_gb_per_s": round(stream.nbytes / mem_1 / 1e9, 2),
            "memory_gb_per_s_all_cores": round(stream.nbytes / mem_all / 1e9, 2), "cases": cases}


def summarise(layers: dict[str, dict]) -> dict:
    cases = [(layer, name, case) for layer, res in layers.items() for name, case in res["cases"].items()]
    small = [case for _, name, case in cases if name in ("one cell", "3x3")]
    return {
        "speedup_vs_reference": min(case["speedup_vs_reference"] for _, _, case in cases),
        "topk_identical": all(case["topk_identical"] for _, _, case in cases),
        "max_score_diff": max(case["max_score_diff_topk"] for _, _, case in cases),
        "max_score_diff_all_images": max(case["max_score_diff_all_images"] for _, _, case in cases),
        "memory_stream_ratio": max(case["memory_stream_ratio"] for case in small),
        "memory_stream_ratio_all_masks": max(case["memory_stream_ratio"] for _, _, case in cases),
        "memory_stream_ratio_all_cores": max(case["memory_stream_ratio_all_cores"] for case in small),
        # per instruction set, over every layer and case: the worst all-cores memory ratio, the worst
        # speedup over the reference on the region cases (all but the full grid), over torch chunked
        "per_isa": {isa: {
            "memory_stream_ratio_all_cores_max": max(c["per_isa"][isa]["memory_stream_ratio_all_cores"] for _, _, c in cases),
            "region_speedup_vs_reference_min": min(c["per_isa"][isa]["speedup_vs_reference"]
                                                   for _, name, c in cases if name != "full grid"),
            "speedup_vs_torch_chunked_min": min(c["per_isa"][isa]["speedup_vs_torch_chunked"] for _, _, c in cases),
            "memory_stream_ratio_all_cores_cpu_max": max(c["per_isa"][isa]["memory_stream_ratio_all_cores_cpu"]
                                                         for _, _, c in cases),
            "speedup_vs_torch_chunked_cpu_min": min(c["per_isa"][isa]["speedup_vs_torch_chunked_cpu"] for _, _, c in cases),
            "topk_identical": all(c["per_isa"][isa]["topk_identical"] for _, _, c in cases),
        } for isa in (cases[0][2]["per_isa"] if cases else {})},
    }


def markdown(report: dict) -> str:
    lines = [f"- date: {report['date']}", f"- command: `{report['command']}`",
             f"- machine: {machine_line(report['machine'])}", f"- kernel: {report['kernel']}",
             f"- kernel ISAs, side by side: {', '.join(report['kernel_isas']) or 'none (torch only)'}",
             f"- summary: `{json.dumps(report['summary'])}`", ""]
    for layer, res in report["layers"].items():
        mem = res["memory_ms"]
        one = ", ".join(f"{k.replace('_', ' ')} {v:.1f} ms" for k, v in mem.items() if not k.endswith("_2threads"))
        both = ", ".join(f"{k.removesuffix('_2threads').replace('_', ' ')} {v:.1f} ms" for k, v in mem.items()
                         if k.endswith("_2threads"))
        lines += [f"**{report['model']} {layer}**: {res['images']} images × {res['channels']}×{res['grid']}×{res['grid']} "
                  f"float16 ({res['bytes_read'] / 1e6:.1f} MB read per query). Memory streaming (read once, no "
                  f"conversion): one thread {one} (best {res['memory_gb_per_s']} GB/s); all cores {both} "
                  f"(best {res['memory_gb_per_s_all_cores']} GB/s).", "",
                  "| mask | window | kernel | vfs ms | torch chunked ms | reference ms | × reference | × torch chunked "
                  "| ÷ memory (1 thread) | ÷ memory (all cores) | CPU time: ÷ memory (all cores), × torch chunked "
                  "| top-20 identical | max score diff (top-20 / all) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, case in res["cases"].items():
            for isa, fig in case["per_isa"].items():
                lines.append(f"| {name} | {case['window'][0]}×{case['window'][1]} ({case['active_cells']} cells) | "
                             f"{isa} | {fig['vfs_ms']} | {case['torch_chunked_ms']} ({case['torch_strategy']}) | "
                             f"{case['reference_ms']} | {fig['speedup_vs_reference']}× | "
                             f"{fig['speedup_vs_torch_chunked']}× | {fig['memory_stream_ratio']} | "
                             f"{fig['memory_stream_ratio_all_cores']}"
                             + (f" (arithmetic alone {fig['compute_bound_ratio_all_cores']})"
                                if "compute_bound_ratio_all_cores" in fig else "")
                             + f" | {fig['memory_stream_ratio_all_cores_cpu']}"
                             + (f" (arithmetic alone {fig['compute_bound_ratio_all_cores_cpu']})"
                                if "compute_bound_ratio_all_cores_cpu" in fig else "")
                             + f", {fig['speedup_vs_torch_chunked_cpu']}× | {fig['topk_identical']} | "
                             f"{fig['max_score_diff_topk']:.1e} / {fig['max_score_diff_all_images']:.1e} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Search vs the reference implementation and vs memory streaming.")
    parser.add_argument("--data", required=True, help="image folder (its cache is built if missing)")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--layer", action="append", help="layer (repeatable); default: a 7×7 and a 14×14 layer")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--queries", type=int, default=3, help="query images checked against the reference")
    parser.add_argument("--repeats", type=int, default=15, help="timing rounds for vfs and memory streaming")
    parser.add_argument("--ref-repeats", type=int, default=3, help="timing rounds for the reference (slow)")
    parser.add_argument("--isa", default=None,
                        help="fused kernel instruction sets to time side by side, comma-separated, or 'all' (every "
                             "one this CPU runs); default: the one the dispatch (or VFS_KERNEL_ISA) chooses")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each kernel on L2-resident images (its arithmetic alone, no memory traffic)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-append", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)

    info = machine()  # at the start: it records the load average before the run
    started = time.perf_counter()
    data = Path(args.data).expanduser()
    model = load_model(args.model, args.weights, device="cpu")
    layers = args.layer or DEFAULT_LAYERS.get(args.model) or [model.default_layer.name]
    kernel = _native.load()
    if args.isa in (None, ""):
        isas = [kernel.isa] if kernel else []
    elif args.isa == "all":
        isas = _native.runnable_isas()
    else:
        isas = [name.strip() for name in args.isa.split(",") if name.strip()]
    threads = torch.get_num_threads()
    results, index_info = {}, {}
    for layer in layers:
        cache, index_info[layer] = ensure_cache(data, model, layer, Path(args.cache_dir))
        print(f"[bench.search] {layer}: {len(cache)} images, {cache.channels}×{cache.grid}×{cache.grid}",
              file=sys.stderr)
        results[layer] = bench_layer(cache, args.queries, args.repeats, args.ref_repeats, threads, isas,
                                     args.breakdown)
    report = {"benchmark": "search", "date": now(), "command": command_line(), "machine": info,
              "data": str(data), "model": model.label, "layers": results, "index": index_info,
              "kernel": (f"fused C kernel {kernel.path.name} ({_native.info()['kernel']['built_with']}), dispatch chose "
                         f"{kernel.isa}: {_native.reason}") if kernel else f"torch only ({_native.error})",
              "kernel_isa": isas[0] if isas else None, "kernel_isas": isas,
              "seconds": round(time.perf_counter() - started, 1)}
    report["summary"] = summarise(results)
    report.update(report["summary"])
    if not args.no_append:
        append_results(f"Search vs reference and memory streaming ({report['date']})", markdown(report))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
