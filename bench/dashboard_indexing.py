"""Dashboard indexing against the command line's, side by side, and how fast Cancel answers.

    python -m bench.dashboard_indexing [--data DIR] [--limit 512] [--rounds 2] [--json] [--no-append]

Takes the first ``--limit`` images of DIR (symlinked into a temporary folder, class folders kept) and, each
round (after one untimed build, to warm up), indexes them into a fresh cache folder three ways, one after
another in this process, in the reverse order every other round:

* ``vfs index``: the command line in a subprocess (``--json``; its own timing, so not the process start);
* ``library``: ``build_index`` with the command line's settings (batch 32, 2 decoding threads), in the
  calling thread: what ``vfs index`` runs once its process has started;
* ``dashboard``: the dashboard's own runner: ``IndexJobs.start`` with ``Selection.build`` (batch 8) in a background
  thread, while the calling thread reads the job's progress once a second as the page's progress fragment does;
* ``vfs index --batch-size 8`` and ``dashboard, batch 32``: each with the other's batch size, to tell the batch
  size's share of a difference from the runner's.

Rates are images/s as ``build_index`` times itself (scan to last shard written); the summary is the best
round of each. Then one more dashboard build is cancelled after its fourth batch: how long Cancel takes to
answer (the job stops counting as running) and to finish (the batch in flight stored), and that the
finished images were kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._common import append_results, command_line, machine, machine_line, now
from bench.indexing import DEFAULT_DATA, run_index, subset
from vfs.cache.catalog import read_cache
from vfs.cache.indexing import IndexSummary, build_index
from vfs.dashboard.indexing_jobs import IndexJob, IndexJobs, JobState
from vfs.dashboard.selection import Selection
from vfs.features.models import load_model

PAGE_POLL_S = 1.0  # the page's progress fragment: @st.fragment(run_every=1.0)


def watched(job: IndexJob) -> IndexSummary:
    """Wait for a job as the page does: read its progress every PAGE_POLL_S until it stops."""
    while not job.wait(PAGE_POLL_S):
        _ = job.fraction, job.progress
    assert job.summary is not None, job.error
    return job.summary


def rate(summary: IndexSummary) -> float:
    return round(summary.indexed / summary.seconds, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=512, help="images to index (from the start, in path order)")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)

    info = machine()  # at the start: it records the load average before the run
    data = Path(args.data).expanduser().resolve()
    work = Path(tempfile.mkdtemp(prefix="vfs-bench-dashboard-index-"))
    try:
        folder = work / data.name
        images = len(subset(data, args.limit, folder))
        model = load_model(args.model, device="cpu")
        layer = model.default_layer
        fresh = iter(range(1_000_000))

        def selection() -> Selection:
            return Selection(folder, model, layer, layer.default_grid, work / f"cache-{next(fresh)}")

        def command_line_index(batch_size: int = 32) -> float:
            chosen = selection()
            outcome = run_index(folder, chosen.cache_dir, argparse.Namespace(
                model=args.model, batch_size=batch_size, workers=2, layer=layer.name))
            return round(outcome["images_per_second"], 2)

        def library() -> IndexSummary:
            chosen = selection()
            return build_index(chosen.root, model, layer, chosen.grid, chosen.cache_dir, batch_size=32, workers=2)

        def dashboard() -> IndexSummary:
            chosen = selection()
            return watched(IndexJobs().start(chosen.cache_path, chosen.describe(), chosen.build))

        def dashboard_batch_32() -> IndexSummary:
            chosen = selection()
            return watched(IndexJobs().start(chosen.cache_path, chosen.describe(), lambda progress, cancel: build_index(
                chosen.root, model, layer, chosen.grid, chosen.cache_dir, batch_size=32, progress=progress,
                cancel=cancel)))

        ways = {"vfs index": command_line_index, "vfs index --batch-size 8": lambda: command_line_index(8),
                "library": lambda: rate(library()), "dashboard": lambda: rate(dashboard()),
                "dashboard, batch 32": lambda: rate(dashboard_batch_32())}
        rates: dict[str, list[float]] = {name: [] for name in ways}
        library()  # untimed: the first forward passes of a process are slower (allocations, kernel choice)
        for round_number in range(args.rounds):
            order = list(ways.items())
            for name, build in order if round_number % 2 == 0 else reversed(order):  # no way always goes first
                rates[name].append(build())
        best = {name: max(values) for name, values in rates.items()}

        chosen = selection()
        job = IndexJobs().start(chosen.cache_path, chosen.describe(), chosen.build)
        while job.state is JobState.RUNNING and (job.progress is None or job.progress.done < 32):  # 5th batch in flight
            time.sleep(0.01)
        clicked = time.perf_counter()
        job.cancel()
        answered = time.perf_counter() - clicked if job.state is not JobState.RUNNING else None
        job.wait()
        finished = time.perf_counter() - clicked
        kept = read_cache(chosen.cache_path)
        report = {
            "date": now(), "command": command_line(), "machine": info, "data": str(data), "images": images,
            "model": model.name, "layer": layer.name, "grid": layer.default_grid, "rates": rates, "best": best,
            "dashboard_vs_cli": round(best["dashboard"] / best["vfs index"], 3),
            "dashboard_vs_library": round(best["dashboard"] / best["library"], 3),
            "cli_batch_8_vs_cli": round(best["vfs index --batch-size 8"] / best["vfs index"], 3),
            "cancel_answer_s": None if answered is None else round(answered, 4),
            "cancel_finished_s": round(finished, 3), "cancel_kept_images": kept.images if kept else 0,
            "cancelled": bool(job.summary and job.summary.cancelled),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    body = "\n".join([
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
        f"- machine: {machine_line(info)}",
        (f"- {images} images of {data} (the first, in path order), {model.name} {layer.name} grid "
         f"{layer.default_grid}, a fresh cache folder per build, {args.rounds} rounds"),
        "",
        "| build | images/s per round | best | ÷ vfs index |",
        "|---|---|---|---|",
        *[f"| {name} | {', '.join(map(str, values))} | {best[name]} | {best[name] / best['vfs index']:.3f} |"
          for name, values in rates.items()],
        "",
        (f"- **dashboard ÷ vfs index: {report['dashboard_vs_cli']}** (÷ the library call in this process: "
         f"{report['dashboard_vs_library']}); `vfs index --batch-size 8` ÷ `vfs index`: {report['cli_batch_8_vs_cli']}"),
        (f"- Cancel, pressed while the dashboard's fifth batch was in flight: the job stopped counting as running after "
         f"{report['cancel_answer_s']} s; its thread finished the batch and stopped {report['cancel_finished_s']} s "
         f"after the click, keeping {report['cancel_kept_images']} images (cancelled: {report['cancelled']})"),
    ])
    if not args.no_append:
        append_results(f"Dashboard indexing vs the command line ({report['date']})", body)
    print(json.dumps(report, indent=1) if args.json else body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
