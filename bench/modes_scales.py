"""The modes of multi-scale matches (each window read from its pyramid level), against scale 1 alone.

The dataset and queries of ``bench.scales`` (imagenette-val photos plus, for each class's first photo,
copies of its central box pasted onto another class's photo at 0.5× and 1.6× its size); its pyramid
levels must be indexed already (``python -m bench.scales`` builds them). For each query box, the top
200 matches (query image left out) are grouped into modes at scale 1 and at the multi-scale default.
Reported: modes per query, label purity against random partitions of the same sizes, the share of the
multi-scale top 200 found at another scale, the clustering time (reading windows from every level),
and, for the half-size copy, the share of its mode's members labelled with the query's class.

``python -m bench.modes_scales [--work data/bench-scales] [--cache-dir data/cache] [--layer blocks.4] [--record]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench._common import append_results, command_line, machine, now
from bench.queries import purity, random_purity
from bench.scales import central_box
from vfs import FeatureSearch
from vfs.analysis.match_modes import search_modes
from vfs.similarity.scales import MULTI_SCALES

MATCHES = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="data/bench-scales", help="bench.scales' dataset")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    data = Path(args.work)
    fs = FeatureSearch(data, layer=args.layer, cache_dir=args.cache_dir)
    cache = fs.cache
    classes = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name != "pasted")
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {"scale 1": [], "multi": []}
    for name in classes:
        query = data / name / min(p.name for p in (data / name).iterdir())
        box = central_box(tuple(cache.image_sizes[cache.index_of(f"{name}/{query.name}")]))
        copy = cache.index_of(f"pasted/{name}-x0.5.jpg")
        for kind, scales in (("scale 1", (1.0,)), ("multi", MULTI_SCALES)):
            result = fs.search(query, box=box, top_k=MATCHES, exclude_query=True, scales=scales)
            started = time.perf_counter()
            modes = search_modes(fs, result, n=MATCHES)
            seconds = time.perf_counter() - started
            groups = [[cache.labels[i] for i in mode.members] for mode in modes]
            members = [label for group in groups for label in group]
            other_scale = float(np.mean([m.scale != 1.0 for m in result.matches]))
            holding = next((mode for mode in modes if copy in mode.members), None)
            copy_class = (None if holding is None else
                          sum(cache.labels[i] == name for i in holding.members) / holding.size)
            rows[kind].append((len(modes), purity(groups), random_purity(members, [len(g) for g in groups], rng),
                               seconds, other_scale, copy_class))

    def summary(found: list) -> dict:
        with_copy = [r[5] for r in found if r[5] is not None]
        return {"modes per query (mean, min, max)": [round(float(np.mean([r[0] for r in found])), 2),
                                                     min(r[0] for r in found), max(r[0] for r in found)],
                "label purity (mean)": round(float(np.mean([r[1] for r in found])), 3),
                "random partitions of the same sizes (mean)": round(float(np.mean([r[2] for r in found])), 3),
                "queries purer than random": sum(r[1] > r[2] for r in found),
                "top 200 found at another scale (mean share)": round(float(np.mean([r[4] for r in found])), 3),
                "half-size copy in the top 200": len(with_copy),
                "its mode's share of the query's class (mean)": round(float(np.mean(with_copy)), 3) if with_copy
                else None,
                "clustering ms (median)": round(float(np.median([r[3] for r in found])) * 1000, 1)}

    report = {"layer": args.layer, "images": len(cache), "queries": len(classes),
              **{kind: summary(found) for kind, found in rows.items()}}
    print(json.dumps(report, indent=2))
    if args.record:
        body = (f"- date: {now()}\n- command: `{command_line()}`\n- machine: {machine()}\n- images: {len(cache)}\n\n"
                "| | scale 1 | multi-scale |\n|---|---|---|\n"
                + "\n".join(f"| {key} | {report['scale 1'][key]} | {report['multi'][key]} |"
                            for key in report["scale 1"]))
        append_results(f"Modes of multi-scale matches ({now()})", body)


if __name__ == "__main__":
    main()
