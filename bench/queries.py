"""What region sets and match modes bring, measured on labelled photos (imagenette-val by default).

Queries: the central box (the middle half of width and height) of the first ``--per-class``
photos of every class. Measured, with the query images left out of the results:

* **Region sets**: label precision@20 of one region alone, of two positive regions (the central
  boxes of two photos of the same class), and of one region with a negative: the matched window of
  the best-ranked photo of the label that is most common among the wrong labels of its top 20
  (what a user would mark "not like that").
* **Match modes**: each query's top 200 matches grouped into modes; label purity (the share of
  matches whose label is their mode's most common one) against random partitions of the same
  sizes (mean of 200 shuffles), the number of modes, and the time the clustering takes.

``python -m bench.queries --data ../shared/datasets/imagenette-val [--layer blocks.5] [--record]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench._common import append_results, command_line, machine, now
from vfs import FeatureSearch, QueryRegion
from vfs.analysis.match_modes import match_modes

PRECISION_AT = 20


def central_box(size: tuple[int, int]) -> tuple[float, float, float, float]:
    width, height = size
    return width / 4, height / 4, 3 * width / 4, 3 * height / 4


def precision(labels: list[str | None], label: str | None) -> float:
    return sum(found == label for found in labels) / max(len(labels), 1)


def purity(groups: list[list[str | None]]) -> float:
    total = sum(len(g) for g in groups)
    return sum(Counter(g).most_common(1)[0][1] for g in groups if g) / max(total, 1)


def random_purity(labels: list[str | None], sizes: list[int], rng: np.random.Generator, shuffles: int = 200) -> float:
    values = []
    for _ in range(shuffles):
        shuffled = list(rng.permutation(np.array(labels, dtype=object)))
        cuts = np.cumsum([0, *sizes])
        values.append(purity([shuffled[a:b] for a, b in zip(cuts[:-1], cuts[1:])]))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/datasets/imagenette-val")
    parser.add_argument("--layer", default="blocks.5")
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    fs = FeatureSearch(args.data, layer=args.layer, cache_dir=args.cache_dir)
    fs.index()
    cache = fs.cache
    data = Path(args.data)
    by_label: dict[str | None, list[int]] = {}
    for i, label in enumerate(cache.labels):
        by_label.setdefault(label, []).append(i)
    queries = {label: rows[: args.per_class] for label, rows in sorted(by_label.items(), key=lambda kv: str(kv[0]))}
    rng = np.random.default_rng(0)

    single, pair, negated, mode_rows = [], [], [], []
    for label, rows in queries.items():
        regions = [QueryRegion(data / cache.paths[i], box=central_box(tuple(cache.image_sizes[i]))) for i in rows]
        for region, row in zip(regions, rows):
            result = fs.search(region.image, box=region.box, top_k=PRECISION_AT, exclude_query=True)
            found = [m.label for m in result.matches]
            single.append(precision(found, label))
            wrong = Counter(m.label for m in result.matches if m.label != label)
            if wrong:
                confused = wrong.most_common(1)[0][0]
                worst = next(m for m in result.matches if m.label == confused)
                negative = QueryRegion(data / worst.path, box=worst.box, negative=True)
                with_negative = fs.search_regions([region, negative], top_k=PRECISION_AT + 1, exclude_query=True)
                kept = [m.label for m in with_negative.matches if m.index != worst.index][:PRECISION_AT]
                negated.append((precision(found, label), precision(kept, label)))

            wide = fs.search(region.image, box=region.box, top_k=1, exclude_query=True)
            started = time.perf_counter()
            modes = match_modes(cache, wide)
            seconds = time.perf_counter() - started
            groups = [[cache.labels[i] for i in mode.members] for mode in modes]
            members = [lab for g in groups for lab in g]
            mode_rows.append((len(modes), purity(groups), random_purity(members, [len(g) for g in groups], rng),
                              seconds))
        if len(regions) >= 2:
            both = fs.search_regions(regions[:2], top_k=PRECISION_AT, exclude_query=True)
            pair.append(precision([m.label for m in both.matches], label))

    summary = {
        "layer": args.layer, "queries": len(single),
        "precision@20 one region (mean)": round(float(np.mean(single)), 3),
        "precision@20 two positive regions (mean over classes)": round(float(np.mean(pair)), 3),
        "precision@20 of the same queries alone (mean of the two)": round(float(np.mean(
            [(single[2 * k] + single[2 * k + 1]) / 2 for k in range(len(pair))])), 3) if args.per_class >= 2 else None,
        "with a negative: precision@20 before → after (mean)": [round(float(np.mean([a for a, _ in negated])), 3),
                                                               round(float(np.mean([b for _, b in negated])), 3)],
        "with a negative: queries improved / unchanged / worse": [sum(b > a for a, b in negated),
                                                                 sum(b == a for a, b in negated),
                                                                 sum(b < a for a, b in negated)],
        "modes per query (mean, min, max)": [round(float(np.mean([r[0] for r in mode_rows])), 2),
                                             min(r[0] for r in mode_rows), max(r[0] for r in mode_rows)],
        "mode label purity (mean)": round(float(np.mean([r[1] for r in mode_rows])), 3),
        "random partitions of the same sizes (mean)": round(float(np.mean([r[2] for r in mode_rows])), 3),
        "queries whose modes are purer than random": sum(r[1] > r[2] for r in mode_rows),
        "clustering ms (median)": round(float(np.median([r[3] for r in mode_rows])) * 1000, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.record:
        info = machine()
        body = (f"- date: {now()}\n- command: `{command_line()}`\n- machine: {info}\n- images: {len(cache)}\n\n"
                + "\n".join(f"- {key}: {value}" for key, value in summary.items()))
        append_results(f"Region sets and match modes ({now()})", body)


if __name__ == "__main__":
    main()
