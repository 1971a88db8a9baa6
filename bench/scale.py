"""Benchmark 3: scale-out. Ray indexing throughput, sharded search, and the approximate first stage.

    python -m bench.scale indexing [--data DIR] [--images 300] [--no-append]
    python -m bench.scale search [--data DIR] [--sizes 62500,250000,1000000] [--skip-real]
                                 [--ray-actors 2] [--queries 10] [--repeats 3] [--no-append]

``indexing``: the first ``--images`` photos of DIR (copied into a temporary folder, so every run
extracts all of them) indexed with tf_efficientnet_lite0 at its default layer by the local engine
(2 decoding threads, torch on all cores) and by the Ray engine with 1 and 2 actors on a local Ray
started with as many CPUs as the machine has. Throughput is images / wall time of
``build_index``, Ray start excluded, actor start-up included; the caches are checked for equal
rows and features within float16 rounding.

``search``: exact search against the approximate first stage (:mod:`vfs.similarity.approximate`), on

* the real cache of DIR (imagenette-val: tf_efficientnet_lite0 blocks.6, 320×7×7), and
* synthetic caches of up to 1M images at C=32, G=7 (see :func:`synthetic_features`): real
  imagenette grids projected to 32 channels by PCA, each synthetic image a shifted, flipped,
  spliced and noised copy of one of them, so the collection is full of near-duplicates and
  partial copies, as provenance search meets. Smaller N are prefixes of the 1M cache.

For 10 query images (taken from the cache) and the four region masks of bench/search.py (one
cell, 3×3, brush stroke, full grid), it reports the exact search time (default backend; at the
largest N also the ``sharded`` backend in 2 threads and, with ``--ray-actors``, ``ray-sharded``
on a local Ray, both checked to return the same matches), the approximate search time with the
default number of candidates (1000 for the one-cell region, else 4000; 100 on imagenette-val)
and nprobe, and recall@20 (the share of the exact top-20 images
that the approximate top-20 holds), plus index build time and size. An index built by an earlier
run is reused (its build time is in its regions.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import append_results, command_line, machine, machine_line, now
from bench.search import grid_masks
from vfs.cache.feature_cache import MANIFEST, CacheSpec, FeatureCache, ShardRows, ShardStore, cache_path
from vfs.similarity.exact import Query, search

SCALE_DIR = Path("data/cache/synthetic-scale")
SYNTHETIC_SHARD = 62_500
SYNTHETIC_SIZE = 1_000_000  # smaller N are prefixes of this cache
SYNTHETIC_CHANNELS, SYNTHETIC_GRID = 32, 7
TOP_K = 20


# --- synthetic caches -------------------------------------------------------------------------

def _pca_basis(real: FeatureCache, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top principal directions of the real cache's cells."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(real), min(len(real), 2000), replace=False))
    cells = real.take(rows).shards[0].features.astype(np.float32).transpose(0, 2, 3, 1).reshape(-1, real.channels)
    mean = cells.mean(axis=0)
    centred = cells - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return mean, vectors[:, ::-1][:, :channels].T


def synthetic_features(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` edited copies of random ``base`` grids (B, C, G, G): shift by up to a cell (edges
    repeated), mirror half of them, splice a random 2–4-cell rectangle of another base grid into
    half of them, scale channels by N(1, 0.1) and add noise of a quarter of the features' spread."""
    b, c, g, _ = base.shape
    spread = float(base.std())
    source = base[rng.integers(0, b, n)]
    rows = np.clip(np.arange(g)[None] + rng.integers(-1, 2, (n, 1)), 0, g - 1)
    cols = np.clip(np.arange(g)[None] + rng.integers(-1, 2, (n, 1)), 0, g - 1)
    mirror = rng.random(n) < 0.5
    cols[mirror] = cols[mirror][:, ::-1]
    out = source[np.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]].transpose(0, 3, 1, 2)
    donor = base[rng.integers(0, b, n)]
    h, w = rng.integers(2, 5, n), rng.integers(2, 5, n)
    top, left = rng.integers(0, g - h + 1), rng.integers(0, g - w + 1)
    grid = np.arange(g)
    inside = (((grid[None] >= top[:, None]) & (grid[None] < (top + h)[:, None]))[:, :, None]
              & ((grid[None] >= left[:, None]) & (grid[None] < (left + w)[:, None]))[:, None, :])
    inside &= (rng.random(n) < 0.5)[:, None, None]
    out = np.where(inside[:, None], donor, out)
    out = out * rng.normal(1.0, 0.1, (n, c, 1, 1)) + rng.normal(0.0, 0.25 * spread, out.shape)
    return out.astype(np.float16)


def synthetic_cache(real: FeatureCache, images: int, seed: int = 0) -> FeatureCache:
    """The synthetic cache of ``images`` images (made once, then reused), in shards of 62,500."""
    path = SCALE_DIR / f"n{images}-c{SYNTHETIC_CHANNELS}-g{SYNTHETIC_GRID}-s{seed}"
    if (path / MANIFEST).exists():
        return FeatureCache.open(path)
    spec = CacheSpec(model="synthetic-imagenette-pca", weights=f"seed {seed}", fingerprint=str(seed), layer="pca32",
                     preprocessing={"resize": "full-image"}, grid=SYNTHETIC_GRID, channels=SYNTHETIC_CHANNELS)
    mean, basis = _pca_basis(real, SYNTHETIC_CHANNELS, seed)
    cells = np.concatenate([s.features for s in real.shards]).astype(np.float32).transpose(0, 2, 3, 1)
    base = ((cells - mean) @ basis.T).transpose(0, 3, 1, 2)  # (B, 32, 7, 7)
    rng = np.random.default_rng(seed)
    store = ShardStore.open(path, spec)
    for start in range(0, images, SYNTHETIC_SHARD):
        count = min(SYNTHETIC_SHARD, images - start)
        rows = ShardRows(paths=[f"synthetic/{i:08d}.png" for i in range(start, start + count)],
                         labels=[None] * count, widths=[224] * count, heights=[224] * count,
                         file_sizes=[1] * count, mtimes=[1] * count,
                         features=list(synthetic_features(base, count, rng)))
        store.append(rows, [])
    return FeatureCache.open(path)


def prefix_cache(full: FeatureCache, images: int) -> FeatureCache:
    """The first ``images`` rows of ``full`` (whole shards) as a cache of its own: links, no copies."""
    path = full.path.with_name(f"{full.path.name}-first{images}")
    if not (path / MANIFEST).exists():
        manifest = json.loads((full.path / MANIFEST).read_text())
        kept, rows = [], 0
        for record in manifest["shards"]:
            if rows >= images:
                break
            kept.append(record)
            rows += record["rows"]
        path.mkdir(parents=True, exist_ok=True)
        for record in kept:
            link = path / record["file"]
            if not link.exists():
                link.symlink_to((full.path / record["file"]).resolve())
        (path / MANIFEST).write_text(json.dumps({**manifest, "shards": kept}, indent=1))
    return FeatureCache.open(path)


# --- search -----------------------------------------------------------------------------------

def _best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def bench_search(cache: FeatureCache, queries: int, repeats: int, label: str, sharded: bool,
                 ray_actors: int = 0, candidates: int | None = None) -> dict:
    from vfs.errors import CacheError
    from vfs.similarity.approximate import DEFAULT_NPROBE, Shortlist
    from vfs.similarity.sharded import ShardedBackend


    try:
        index = Shortlist.open(cache)  # built by an earlier run: its build time is on record
    except CacheError:
        index = Shortlist.build(cache)
    meta = json.loads((Shortlist.folder(cache) / "regions.json").read_text())
    index_bytes = sum(f.stat().st_size for f in Shortlist.folder(cache).iterdir())
    rng = np.random.default_rng(1)
    picks = np.sort(rng.choice(len(cache), queries, replace=False))
    masks = grid_masks(cache.grid)
    sharded_backend = ShardedBackend(threads=2)
    ray_backend = None
    if sharded and ray_actors:
        from vfs.similarity.sharded import RayShardedBackend

        ray_backend = RayShardedBackend(actors_per_node=ray_actors)
    rows = []
    for name, mask in masks.items():
        exact_t, sharded_t, ray_t, approx_t, recalls, scored = [], [], [], [], [], []
        for pick in picks:
            query = Query(cache.features(int(pick)).astype(np.float32), mask)
            search(cache, query, top_k=TOP_K)  # warm-up: page cache, kernel build
            t, exact = _best_time(lambda: search(cache, query, top_k=TOP_K), repeats)
            exact_t.append(t)
            if sharded:
                t, other = _best_time(lambda: search(cache, query, top_k=TOP_K, backend=sharded_backend), repeats)
                assert other.matches == exact.matches, "sharded search differs from the single scan"
                sharded_t.append(t)
            if ray_backend is not None:
                search(cache, query, top_k=TOP_K, backend=ray_backend)  # the first places the shards
                t, other = _best_time(lambda: search(cache, query, top_k=TOP_K, backend=ray_backend), repeats)
                assert other.matches == exact.matches, "ray-sharded search differs from the single scan"
                ray_t.append(t)
            index.search(query, top_k=TOP_K, candidates=candidates)
            t, approx = _best_time(lambda: index.search(query, top_k=TOP_K, candidates=candidates), repeats)
            approx_t.append(t)
            truth = {m.index for m in exact.matches}
            recalls.append(len(truth & {m.index for m in approx.matches}) / len(truth))
            scored.append(approx.candidates)
        row = {"mask": name, "exact_ms": 1000 * float(np.median(exact_t)),
               "approx_ms": 1000 * float(np.median(approx_t)), "recall_at_20": float(np.mean(recalls)),
               "min_recall": float(np.min(recalls)), "candidates": int(np.median(scored))}
        if sharded:
            row["sharded_ms"] = 1000 * float(np.median(sharded_t))
        if ray_t:
            row["ray_sharded_ms"] = 1000 * float(np.median(ray_t))
        row["speedup"] = row["exact_ms"] / row["approx_ms"]
        if ray_backend is not None and name == list(masks)[-1]:
            ray_backend.close()
        rows.append(row)
        print(label, json.dumps(row), flush=True)
    return {"cache": label, "images": len(cache), "channels": cache.channels, "grid": cache.grid,
            "shards": len(cache.shards), "index_build_s": meta["build_seconds"], "index_mb": index_bytes / 2**20,
            "nprobe": DEFAULT_NPROBE,
            "layouts": [f"{layout.size}x{layout.size}×{layout.windows}" for layout in index.layouts],
            "factories": meta["factories"], "masks": rows}


def search_table(results: list[dict]) -> str:
    lines = ["| cache | N | C×G×G | mask | candidates | exact ms | sharded ms | ray-sharded ms | approx ms | speed-up | "
             "recall@20 (min) |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for m in r["masks"]:
            sharded = f"{m['sharded_ms']:.1f}" if "sharded_ms" in m else "–"
            ray_sharded = f"{m['ray_sharded_ms']:.1f}" if "ray_sharded_ms" in m else "–"
            shape = f"{r['channels']}×{r['grid']}×{r['grid']}"
            lines.append(f"| {r['cache']} | {r['images']:,} | {shape} | {m['mask']} | {m['candidates']} | "
                         f"{m['exact_ms']:.1f} | {sharded} | {ray_sharded} | {m['approx_ms']:.1f} | "
                         f"{m['speedup']:.1f}× | {m['recall_at_20']:.3f} ({m['min_recall']:.2f}) |")
    lines += ["", "| cache | N | index build s | index MB | FAISS index per window size | windows per image |",
              "|---|---:|---:|---:|---|---|"]
    for r in results:
        lines.append(f"| {r['cache']} | {r['images']:,} | {r['index_build_s']:.1f} | {r['index_mb']:.0f} | "
                     f"{', '.join(r['factories'])} | {', '.join(r['layouts'])} |")
    lines += ["", "Exact: `vfs.similarity.exact.search` with the default backend (the fused CPU kernel); sharded: the "
              "`sharded` backend, 2 threads over the shards (62,500 images each); ray-sharded: 2 actors on a local "
              "Ray, each scanning its shards with one thread; approx: `Shortlist.search` (FAISS lookup, exact "
              "scoring of the candidates). Times are medians over the queries of the best of the repeats; recall "
              "is the mean (and minimum) over the queries of |approx top-20 ∩ exact top-20| / 20."]
    return "\n".join(lines)


def run_search(args: argparse.Namespace) -> tuple[str, list[dict]]:
    from vfs.cache.indexing import cache_spec
    from vfs.features.models import load_model

    model = load_model("tf_efficientnet_lite0", device="cpu")
    real_path = cache_path(args.cache_dir, args.data, cache_spec(model, model.layer("blocks.6")))
    real = FeatureCache.open(real_path)
    results = []
    with tempfile.TemporaryDirectory() as tmp:  # the real cache is read-only here: its index goes to a copy
        copy = Path(tmp) / real_path.name
        copy.mkdir()
        for item in real_path.iterdir():
            if item.name.endswith(".arrow") or item.name == MANIFEST:
                (copy / item.name).symlink_to(item.resolve())
        if not args.skip_real:
            results.append(bench_search(FeatureCache.open(copy), args.queries, args.repeats, "imagenette-val", True,
                                        candidates=args.real_candidates))
    full = synthetic_cache(real, SYNTHETIC_SIZE) if args.sizes else None
    if args.ray_actors:
        import ray

        ray.init(num_cpus=args.ray_actors, include_dashboard=False)
    for size in sorted(args.sizes):
        cache = full if size == len(full) else prefix_cache(full, size)
        results.append(bench_search(cache, args.queries, args.repeats, "synthetic", size == max(args.sizes),
                                    args.ray_actors))
    return search_table(results), results


# --- indexing ---------------------------------------------------------------------------------

def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_indexing(args: argparse.Namespace) -> tuple[str, dict]:
    import os

    import ray

    from vfs.cache.indexing import build_index
    from vfs.features.extraction import get_engine
    from vfs.features.models import load_model

    model = load_model("tf_efficientnet_lite0", device="cpu")
    layer = model.default_layer
    photos = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        for photo in photos[: args.images]:
            target = root / photo.parent.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, target)
        summaries, steady = {}, {}

        def timeline(name: str):
            steady[name] = []
            return lambda p: steady[name].append((time.perf_counter(), p.done))

        summaries["local"] = build_index(root, model, layer, cache_dir=Path(tmp) / "local", batch_size=32, workers=2,
                                         progress=timeline("local"))
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
        try:
            for workers in (1, 2):
                name = f"ray, {workers} actor{'s' * (workers > 1)}"
                summaries[name] = build_index(root, model, layer, cache_dir=Path(tmp) / f"ray{workers}",
                                              batch_size=32, engine=get_engine("ray", workers=workers),
                                              progress=timeline(name))
        finally:
            ray.shutdown()
        reference = FeatureCache.open(summaries["local"].cache_dir)
        for name, summary in summaries.items():
            cache = FeatureCache.open(summary.cache_dir)
            a = np.concatenate([s.features for s in reference.shards]).astype(np.float32)
            b = np.concatenate([s.features for s in cache.shards]).astype(np.float32)
            step = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float32)
            # rounding x and x + e to float16 differs by at most e + one step; e: float32 noise of another
            # thread count, up to ~2e-6 of the largest feature at the deepest layers
            within = bool(np.all(np.abs(a - b) <= step + 4e-6 * np.abs(a).max()))
            (t0, done0), (t1, done1) = steady[name][0], steady[name][-1]  # from the first batch back to the end
            results[name] = {"images": summary.indexed, "seconds": summary.seconds,
                             "images_per_second": summary.images_per_second,
                             "steady_images_per_second": (done1 - done0) / (t1 - t0),
                             "same_rows": cache.paths == reference.paths, "features_within_f16_rounding": within,
                             "identical_values": float(np.mean(a == b)), "max_steps": float((np.abs(a - b) / step).max()),
                             "max_abs_diff": float(np.abs(a - b).max())}
            print(name, json.dumps(results[name]), flush=True)
    lines = [f"{args.images} imagenette-val photos, tf_efficientnet_lite0 {layer.describe()}, batch 32, "
             f"shards of 512. Local: 2 decoding threads, torch on {torch_threads()} threads. Ray: a local instance "
             f"with {os.cpu_count()} CPUs; each actor takes 1 CPU (torch then runs one thread in it) and decodes "
             "its batches in 2 threads. *Wall*: build_index from call to return (Ray start excluded, actor "
             "start-up included); *steady*: images/s from the first finished batch to the last. Features: "
             "values equal bit for bit, and the largest difference in float16 steps (torch's float32 results "
             "depend on its thread count in the last bits).", "",
             "| engine | images | wall s | wall images/s | steady images/s | same rows as local | "
             "bit-identical values | within float16 rounding |", "|---|---:|---:|---:|---:|---|---:|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['images']} | {r['seconds']:.1f} | {r['images_per_second']:.1f} | "
                     f"{r['steady_images_per_second']:.1f} | {r['same_rows']} | {100 * r['identical_values']:.2f}% | "
                     f"{r['features_within_f16_rounding']} (max {r['max_steps']:.1f} steps) |")
    lines.append(f"\nLoad average when done (other jobs share this machine): {os.getloadavg()[0]:.1f}")
    return "\n".join(lines), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["indexing", "search"])
    parser.add_argument("--data", default="/work/shared/datasets/imagenette-val")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--images", type=int, default=300, help="photos indexed by the indexing part")
    parser.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",") if v], default=[62_500, 250_000, 1_000_000])
    parser.add_argument("--ray-actors", type=int, default=0,
                        help="also time ray-sharded search at the largest size with this many actors")
    parser.add_argument("--skip-real", action="store_true", help="leave out the imagenette-val cache")
    parser.add_argument("--real-candidates", type=int, default=100,
                        help="candidates for imagenette-val (the defaults, 1000 and 4000, are a quarter of it "
                             "and all of it)")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    info = machine()
    table, results = run_indexing(args) if args.part == "indexing" else run_search(args)
    print(json.dumps(results, indent=1))
    if not args.no_append:
        title = "Scale-out: Ray indexing, 1 vs 2 workers" if args.part == "indexing" else \
            "Scale-out: exact vs approximate search, time and recall@20 vs N"
        append_results(title, f"`{command_line()}` · {now()}\n\n{machine_line(info)}\n\n{table}")


if __name__ == "__main__":
    main()
