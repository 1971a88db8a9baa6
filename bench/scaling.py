"""Benchmark 4: query time and memory against the number of images, on synthetic caches.

    python -m bench.scaling [--sizes 10000:320,100000:320,1000000:32] [--dir /tmp/...] [--keep] [--with-torch]

Writes caches of random post-ReLU-like float16 features (7×7 grid, C channels) straight to
Arrow shards with the real schema (``vfs.cache.feature_cache.shard_schema``), large shards, plus the manifest,
so that ``FeatureCache.open`` maps them like any cache. Each size is then measured in a fresh
subprocess that opens the cache through the public API (``vfs.FeatureCache``, ``vfs.Query``,
``vfs.similarity.exact`` with the default backend: a search-only process, which does not import torch where
the fused kernel runs; ``--with-torch`` measures a second process that imports torch first, as
every search process did before) and reports:

* ``first_query_s``: the first query of the process (the map's pages are faulted in; the file
  itself is in the page cache, as right after indexing);
* ``query_s``: per mask (one cell, 3×3, full grid), the best of several warm queries, with the
  one- and all-core memory-streaming time of the same bytes in the same process (measured
  after the memory figures below, interleaved with more queries);
* memory, from ``/proc/self/status`` and ``/proc/self/smaps``: ``map_rss_mb`` (resident pages of
  the shard mappings, file-backed), ``rss_beyond_map_mb`` (everything else resident: interpreter,
  torch's libraries, cache metadata, query buffers) after opening and its peak during warm
  queries (``VmHWM`` reset through ``/proc/self/clear_refs`` once the map is fully resident, so
  the peak minus the constant map is exact), and ``anon_mb`` (anonymous RSS) at the same points;
* whether torch was loaded in the process at the end, and the backend that ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from bench._common import append_results, command_line, machine, machine_line, now

GRID = 7


def write_cache(folder: Path, n: int, channels: int, shard_rows: int, seed: int = 0) -> float:
    """A synthetic cache of ``n`` images in ``folder``; returns seconds taken."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from vfs.cache.feature_cache import (
        FORMAT_VERSION,
        MANIFEST,
        CacheSpec,
        ShardRecord,
        _tensor_array,
        cell_norms2,
        shard_schema,
    )

    started = time.perf_counter()
    spec = CacheSpec(model="synthetic", weights="random", fingerprint=f"seed{seed}", layer="synthetic",
                     preprocessing={"resize": "full-image"}, grid=GRID, channels=channels)
    schema = shard_schema(spec)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for index, start in enumerate(range(0, n, shard_rows)):
        rows = min(shard_rows, n - start)
        # post-ReLU-like: about half zeros, the rest in [0, 4); drawn as raw float16 bits (fast)
        bits = rng.integers(0x2000, 0x4400, size=(rows, channels, GRID, GRID), dtype=np.uint16)
        np.bitwise_and(bits, np.negative(bits & 1), out=bits)  # zero where the lowest bit is 0: half the cells
        feats = bits.view(np.float16)
        norms = np.concatenate([cell_norms2(feats[i:i + 4096]) for i in range(0, rows, 4096)])
        paths = pa.array([f"synthetic/{i:08d}.jpg" for i in range(start, start + rows)], pa.string())
        batch = pa.record_batch([
            paths, pa.array(["synthetic"] * rows, pa.string()),
            pa.array(np.full(rows, 224, np.int32)), pa.array(np.full(rows, 224, np.int32)),
            pa.array(np.zeros(rows, np.int64)), pa.array(np.zeros(rows, np.int64)),
            _tensor_array(schema.field("features").type, feats),
            _tensor_array(schema.field("cell_norms2").type, norms),
        ], schema=schema)
        name = f"shard-{index:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, ipc.new_file(sink, schema) as writer:
            writer.write_batch(batch)
        crc = 0
        with open(folder / name, "rb") as handle:
            while chunk := handle.read(1 << 24):
                crc = zlib.crc32(chunk, crc)
        records.append(ShardRecord(name, rows, (folder / name).stat().st_size, crc))
    manifest = {"format_version": FORMAT_VERSION, "spec": json.loads(spec.to_json()),
                "shards": [dataclasses.asdict(r) for r in records]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return time.perf_counter() - started


CHILD = r'''
import json, sys, time
import numpy as np

def status():
    out = {}
    for line in open("/proc/self/status"):
        key, value = line.split(":", 1)
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out

def map_rss(folder):
    """Resident MB of the mappings of files under folder (the shards)."""
    total, current = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            current = len(head) >= 6 and head[5].startswith(folder)
        elif current and line.startswith("Rss:"):
            total += int(head[1])
    return total / 1024

folder, repeats, with_torch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if with_torch:
    import torch  # as every search process did before vfs.similarity.exact stopped importing it
from bench._common import MemoryStream
from vfs import FeatureCache, Query, search
t = time.perf_counter()
cache = FeatureCache.open(folder)
open_s = time.perf_counter() - t
after_open = status(); after_open["map"] = map_rss(folder)
rng = np.random.default_rng(1)
g = cache.grid
masks = {}
m = np.zeros((g, g), np.float32); m[g // 2, g // 2] = 1; masks["one cell"] = m
m = np.zeros((g, g), np.float32); m[2:5, 2:5] = 1; masks["3x3"] = m
masks["full grid"] = np.ones((g, g), np.float32)
qf = cache.features(len(cache) // 2).astype(np.float32)
backend = "auto"
t = time.perf_counter()
first = search(cache, Query(qf, masks["3x3"]), top_k=20, backend=backend)
first_s = time.perf_counter() - t
after_first = status(); after_first["map"] = map_rss(folder)
open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM: the first query made the map fully resident
before_warm = status(); before_warm["map"] = map_rss(folder)
times = {name: [] for name in masks}
for r in range(repeats):
    for name, mask in masks.items():
        t = time.perf_counter(); search(cache, Query(qf, mask), top_k=20, backend=backend)
        times[name].append(time.perf_counter() - t)
after_warm = status(); after_warm["map"] = map_rss(folder)
stream = MemoryStream([a for s in cache.shards for a in (s.features, s.cell_norms2)])  # after: its buffer is not the query's
mem = {k: [] for k in stream.all()}
for r in range(repeats):
    for key, fn in stream.all().items():
        t = time.perf_counter(); fn(); mem[key].append(time.perf_counter() - t)
    for name, mask in masks.items():  # interleaved with the streaming, for the side-by-side ratio
        t = time.perf_counter(); search(cache, Query(qf, mask), top_k=20, backend=backend)
        times[name].append(time.perf_counter() - t)
print(json.dumps({"open_s": open_s, "first_query_s": first_s, "first_top": first.matches[0].index,
                  "query_s": {k: min(v) for k, v in times.items()}, "memory_s": {k: min(v) for k, v in mem.items()},
                  "bytes": stream.nbytes, "after_open": after_open, "after_first": after_first,
                  "before_warm": before_warm, "after_warm": after_warm, "torch_loaded": "torch" in sys.modules,
                  "backend": first.backend}))
'''


def measure(folder: Path, repeats: int, with_torch: bool = False) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(repeats), str(int(with_torch))],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Query time and RSS against N on synthetic caches.")
    parser.add_argument("--sizes", default="10000:320,100000:320,1000000:32",
                        help="comma-separated N:C (7×7 grid)")
    parser.add_argument("--dir", default=None, help="where to write the caches (default: a temp folder in /tmp)")
    parser.add_argument("--shard-bytes", type=float, default=512e6, help="target shard size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the synthetic caches")
    parser.add_argument("--with-torch", action="store_true",
                        help="also measure each size in a process that imports torch first (the old figures)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)

    info = machine()  # at the start: it records the load average before the run
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vfs-bench-scaling-"))
    results = []
    try:
        for item in args.sizes.split(","):
            n, c = (int(v) for v in item.split(":"))
            folder = base / f"n{n}-c{c}"
            shard_rows = max(1, int(args.shard_bytes // (c * GRID * GRID * 2)))
            write_s = 0.0 if (folder / "manifest.json").exists() else write_cache(folder, n, c, shard_rows)
            print(f"[bench.scaling] N={n} C={c}: written in {write_s:.1f} s; measuring", file=sys.stderr)
            for with_torch in (False, True) if args.with_torch else (False,):
                res = measure(folder, args.repeats, with_torch)
                res.update({"n": n, "channels": c, "shard_rows": shard_rows, "write_s": write_s})
                results.append(res)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)

    rows = []
    for r in results:
        mem1 = min(v for k, v in r["memory_s"].items() if not k.endswith("_2threads"))
        mem2 = min(v for k, v in r["memory_s"].items() if k.endswith("_2threads"))
        beyond_open = r["after_open"]["VmRSS"] - r["after_open"]["map"]
        peak_beyond = r["after_warm"]["VmHWM"] - r["before_warm"]["map"]
        rows.append({
            "n": r["n"], "channels": r["channels"], "gb": round(r["bytes"] / 1e9, 3),
            "first_query_s": round(r["first_query_s"], 3),
            **{f"{k}_s": round(v, 4) for k, v in r["query_s"].items()},
            "ns_per_image_3x3": round(r["query_s"]["3x3"] / r["n"] * 1e9, 1),
            "memory_1thread_s": round(mem1, 4), "memory_all_cores_s": round(mem2, 4),
            "ratio_3x3_to_memory_1thread": round(r["query_s"]["3x3"] / mem1, 2),
            "map_rss_mb": round(r["before_warm"]["map"], 1),
            "rss_beyond_map_after_open_mb": round(beyond_open, 1),
            "rss_beyond_map_peak_warm_query_mb": round(peak_beyond, 1),
            "anon_after_open_mb": round(r["after_open"]["RssAnon"], 1),
            "anon_after_queries_mb": round(r["after_warm"]["RssAnon"], 1),
            "open_s": round(r["open_s"], 2), "torch_loaded": r["torch_loaded"], "backend": r["backend"],
        })
    report = {"benchmark": "scaling", "date": now(), "command": command_line(), "machine": info, "rows": rows}
    if len(rows) >= 2:  # linearity: time per image at the largest N over the smallest N of the same C
        same = [r for r in rows if r["channels"] == rows[0]["channels"] and not r["torch_loaded"]]
        if len(same) >= 2:
            report["ns_per_image_ratio_largest_vs_smallest"] = round(same[-1]["ns_per_image_3x3"] / same[0]["ns_per_image_3x3"], 2)
    lines = [f"- date: {report['date']}", f"- command: `{report['command']}`",
             f"- machine: {machine_line(report['machine'])}", "",
             "| N | C×7×7 | torch loaded | GB | first query s | 1 cell s | 3×3 s | full s | ns/image (3×3) "
             "| memory 1 thread s | 3×3 ÷ memory | map RSS MB | RSS beyond map MB (open / peak in queries) "
             "| anon MB (open / after) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['channels']} | {'yes' if r['torch_loaded'] else 'no'} | {r['gb']} | "
                     f"{r['first_query_s']} | {r['one cell_s']} | "
                     f"{r['3x3_s']} | {r['full grid_s']} | {r['ns_per_image_3x3']} | {r['memory_1thread_s']} | "
                     f"{r['ratio_3x3_to_memory_1thread']} | {r['map_rss_mb']} | {r['rss_beyond_map_after_open_mb']} / "
                     f"{r['rss_beyond_map_peak_warm_query_mb']} | {r['anon_after_open_mb']} / {r['anon_after_queries_mb']} |")
    body = "\n".join(lines)
    if not args.no_append:
        append_results(f"Scaling with N, synthetic caches ({report['date']})", body)
    print(json.dumps(report, indent=1) if args.json else body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
