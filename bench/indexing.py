"""Benchmark 3: indexing throughput against the bare model.

    python -m bench.indexing [--data DIR] [--limit 640] [--layer L] [--batch-size 32] [--workers 2]

Takes the first ``--limit`` images of DIR (symlinked into a temporary folder, class folders
kept) and measures, side by side in one run:

* ``vfs index``: the CLI in a subprocess, into a fresh cache folder, ``--rounds`` times: images/s as the
  CLI reports it (from the start of ``build_index``: scan, decode in worker threads, forward,
  float16 conversion, shard writes with fsync) and end to end (process start to exit,
  including Python, torch and model loading);
* the bare forward: the same model, layer, batch size and torch threads on tensors decoded and
  preprocessed beforehand (``FeatureModel.grid_features``: forward to the layer plus pooling),
  before, between and after the index runs; stacked as (B, 3, H, W) tensors, as the reference
  since the first runs (``grid_features`` copies them to channels-last first), and, beside each,
  on batches already channels-last (the pure forward; the index path builds its batches so);
* decoding alone (``load_image`` + preprocessing, one thread), to explain the difference.

Reports ``index_vs_forward`` = best index images/s ÷ best forward images/s (target ≥ 0.85), the
same against the channels-last forward, and, since other jobs share the machine, each index run
against the forward runs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench._common import append_results, command_line, machine, machine_line, now
from vfs.features.images import DEFAULT_MAX_PIXELS, load_image, scan_images
from vfs.features.models import load_model

DEFAULT_DATA = "/work/shared/datasets/imagenette-val"


def subset(data: Path, limit: int, into: Path) -> list[str]:
    """Symlink the first ``limit`` images (in path order) into ``into``, keeping folders."""
    entries, _ = scan_images(data)
    chosen = [e.path for e in entries[:limit]]
    for rel in chosen:
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(data / rel, target)
    return chosen


def run_index(folder: Path, cache_dir: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "vfs.cli", "index", str(folder), "--cache-dir", str(cache_dir), "--json",
           "--model", args.model, "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--device", "cpu"]
    if args.layer:
        cmd += ["--layer", args.layer]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    summary = json.loads(out.stdout)
    return {"images": summary["indexed"], "seconds": summary["seconds"],
            "images_per_second": summary["indexed"] / summary["seconds"], "end_to_end_seconds": wall,
            "end_to_end_images_per_second": summary["indexed"] / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vfs index throughput vs the bare forward pass.")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=640, help="images to index (from the start, in path order)")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="paired forward/index rounds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)

    info = machine()  # at the start: it records the load average before the run
    data = Path(args.data).expanduser().resolve()
    work = Path(tempfile.mkdtemp(prefix="vfs-bench-index-"))
    try:
        folder = work / data.name
        paths = subset(data, args.limit, folder)
        model = load_model(args.model, device="cpu")
        layer = model.layer(args.layer) if args.layer else model.default_layer
        grid = layer.default_grid

        # decode + preprocess every image once, single thread (also the forward's input)
        started = time.perf_counter()
        tensors = [model.preprocessing(load_image(folder / p, max_pixels=DEFAULT_MAX_PIXELS)) for p in paths]
        decode_s = time.perf_counter() - started
        batches = [torch.stack(tensors[i:i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
        channels_last = [b.contiguous(memory_format=torch.channels_last) for b in batches]

        def forward(inputs: list[torch.Tensor]) -> float:
            t = time.perf_counter()
            for batch in inputs:
                model.grid_features(batch, layer, grid)
            return time.perf_counter() - t

        forward(batches)  # warm-up: allocator, oneDNN primitives
        forwards, forwards_cl, indexes = [], [], []
        for i in range(args.rounds):  # forward, index, forward, index, ...: paired rounds
            forwards.append(forward(batches))
            forwards_cl.append(forward(channels_last))
            indexes.append(run_index(folder, work / f"cache{i}", args))
        forwards.append(forward(batches))
        forwards_cl.append(forward(channels_last))
        n = len(paths)
        best_forward = n / min(forwards)
        best_index = max(r["images_per_second"] for r in indexes)
        # each index run against the better of the forward runs just before and after it: robust to
        # the load of a shared machine drifting between rounds
        paired = sorted(r["images_per_second"] / (n / min(forwards[i], forwards[i + 1])) for i, r in enumerate(indexes))
        report = {
            "benchmark": "indexing", "date": now(), "command": command_line(), "machine": info,
            "data": str(data), "images": n, "model": model.label, "layer": layer.describe(), "grid": grid,
            "batch_size": args.batch_size, "workers": args.workers, "torch_threads": torch.get_num_threads(),
            "forward_images_per_second": [round(n / t, 2) for t in forwards],
            "forward_channels_last_images_per_second": [round(n / t, 2) for t in forwards_cl],
            "index_runs": [{k: round(v, 2) for k, v in r.items()} for r in indexes],
            "decode_ms_per_image_one_thread": round(decode_s / n * 1e3, 2),
            "forward_ms_per_image": round(min(forwards) / n * 1e3, 2),
            "index_images_per_second": round(best_index, 2),
            "bare_forward_images_per_second": round(best_forward, 2),
            "index_vs_forward": round(best_index / best_forward, 3),
            "index_vs_forward_channels_last": round(best_index / (n / min(forwards_cl)), 3),
            "index_vs_forward_paired": [round(v, 3) for v in paired],
            "index_vs_forward_paired_median": round(float(np.median(paired)), 3),
            "index_end_to_end_vs_forward": round(max(r["end_to_end_images_per_second"] for r in indexes) / best_forward, 3),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    body = "\n".join([
        f"- date: {report['date']}", f"- command: `{report['command']}`", f"- machine: {machine_line(report['machine'])}",
        f"- {report['images']} images of {report['data']}, {report['model']} {report['layer']} → grid {report['grid']}, "
        f"batch {report['batch_size']}, {report['workers']} decode workers, {report['torch_threads']} torch threads",
        f"- bare forward (`grid_features` on pre-decoded tensors): {report['forward_images_per_second']} images/s "
        f"({report['forward_ms_per_image']} ms/image); on batches already channels-last: "
        f"{report['forward_channels_last_images_per_second']} images/s",
        f"- `vfs index`: {[r['images_per_second'] for r in report['index_runs']]} images/s as reported; end to end "
        f"(process start to exit, incl. model load) {[r['end_to_end_images_per_second'] for r in report['index_runs']]}",
        f"- decoding + preprocessing alone, one thread: {report['decode_ms_per_image_one_thread']} ms/image",
        f"- **index ÷ bare forward: {report['index_vs_forward']}** (best of each; end to end: "
        f"{report['index_end_to_end_vs_forward']}); per round, each index run against its neighbouring forward runs: "
        f"{report['index_vs_forward_paired']} (median {report['index_vs_forward_paired_median']}); "
        f"best index ÷ best channels-last forward: {report['index_vs_forward_channels_last']}",
    ])
    if not args.no_append:
        append_results(f"Indexing vs the bare forward pass ({report['date']})", body)
    print(json.dumps(report, indent=1) if args.json else body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
