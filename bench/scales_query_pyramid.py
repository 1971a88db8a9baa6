"""A query pyramid against the dataset pyramid: half-size copies at a late layer, side by side.

The dataset pyramid (:mod:`vfs.similarity.scales` as it stood) feeds every dataset image at ``S / s`` for
scale ``s``. A *query pyramid* rescales only the query and searches the region's cells on the scale-1 cache,
so indexing costs nothing more; three ways to rescale it (``--query-pyramids``):

* ``resize`` (``query`` in the table): the query photo fed at ``S · s`` and pooled to ``G · s`` cells;
* ``canvas``: the query photo resized by ``s`` on an ``S``×``S`` canvas of the model's mean colour (cropped
  around the box for ``s > 1``), the box's corner on a cell corner near the centre, fed at ``S``, pooled to
  ``G`` (``--shifts N``: also at N×N sub-cell positions, best of them), so the receptive fields and the
  padding are those of a dataset image;
* ``context``: the box alone, resized likewise, pasted onto ``--backgrounds`` random dataset photos (never a
  copy's own background) and their grids averaged, so the surroundings a small object's cells mix in are
  an average photo's rather than the query's or a flat colour.

Scale 1 is the ordinary query in every variant. Data and copies are those of :mod:`bench.scales`
(``--work``: the folder it made, with ``pasted/``); the dataset pyramid (``--dataset-pyramid``) needs the
levels it is given indexed (``vfs index --scales multi`` or :mod:`bench.scales`; rows whose scales are not all
given are left out).

For each class's query box the ranks of its 0.5× and 1.6× copies and label precision@20 are reported for the
``image`` query (its grid computed on the whole photo) and the ``region`` query (everything outside the box
replaced by the model's mean colour, as in :mod:`bench.scales_probe`), over scale 1, over 0.5 and 1, and over
all five scales; with the query time of the query pyramid's scales (model passes and searches).

``python -m bench.scales_query_pyramid --work DIR --cache-dir DIR --layer blocks.6 [--query-pyramids resize,canvas,context]
[--dataset-pyramid [SCALES]] [--record]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench._common import append_results, command_line, machine, now
from bench.scales import class_query
from bench.scales_probe import FACTORS
from vfs import FeatureSearch
from vfs.features.geometry import box_to_grid
from vfs.features.models import FeatureModel
from vfs.similarity.exact import Query, search
from vfs.similarity.ranking import top_k_indices
from vfs.similarity.scales import MULTI_SCALES, parse_scales, placed_query

SCALE_SETS = (("scale 1", (1.0,)), ("0.5, 1", (0.5, 1.0)), ("multi", MULTI_SCALES))


def query_grid(model: FeatureModel, layer: str, grid: int, image: Image.Image,
               box: tuple[float, float, float, float] | None) -> np.ndarray:
    """The grid of ``image`` at the model's input size; with ``box``, everything outside it is the mean colour."""
    if box is not None:
        canvas = Image.new("RGB", image.size, tuple(round(255 * m) for m in model.preprocessing.mean))
        pixels = tuple(round(v) for v in box)
        canvas.paste(image.crop(pixels), pixels[:2])
        image = canvas
    grids = model.grid_features(model.preprocessing(image)[None], model.layer(layer), grid)
    return grids[0].numpy().astype(np.float16).astype(np.float32)


def canvas_query(model: FeatureModel, layer: str, grid: int, image: Image.Image,
                 box: tuple[float, float, float, float], scale: float,
                 region_only: bool, shift: tuple[float, float] = (0.0, 0.0),
                 background: Image.Image | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The query rescaled by ``scale`` on a canvas of the model's input size (mean colour where the image does
    not reach; cropped where it overflows), the box's top-left on a cell corner as near the centre as fits, then
    moved by ``shift`` (x, y) cells: (grid features, grid mask), or None where the scaled box is larger than the canvas.
    With ``background``, the canvas is that photo (resized to the input) instead of the mean colour."""
    height, width = model.preprocessing.input_size
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    sx, sy = scaled[0] / image.width, scaled[1] / image.height
    bx0, by0, bx1, by1 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
    if bx1 - bx0 > width or by1 - by0 > height:
        return None
    offsets = []
    for lo, hi, side, moved in ((bx0, bx1, width, shift[0]), (by0, by1, height, shift[1])):
        cell = side / grid
        centred = (side - (hi - lo)) / 2 - lo  # the offset that centres the box
        offset = (round((centred + lo) / cell) + moved) * cell - lo  # its start on the nearest cell corner, moved
        offsets.append(min(max(offset, -lo), side - hi))  # the box kept inside the canvas
    ox, oy = offsets
    source = image.crop(tuple(round(v) for v in box)) if region_only else image
    resized = source.resize((max(1, round(bx1 - bx0)), max(1, round(by1 - by0))) if region_only else scaled,
                            Image.Resampling.BICUBIC)
    canvas = (background.resize((width, height), Image.Resampling.BICUBIC) if background is not None
              else Image.new("RGB", (width, height), tuple(round(255 * m) for m in model.preprocessing.mean)))
    canvas.paste(resized, (round(ox + bx0), round(oy + by0)) if region_only else (round(ox), round(oy)))
    features = model.grid_features(model.preprocessing(canvas)[None], model.layer(layer), grid)
    mask = box_to_grid((ox + bx0, oy + by0, ox + bx1, oy + by1), (width, height), grid)
    return features[0].numpy().astype(np.float16).astype(np.float32), mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="the dataset folder bench.scales made (photos and pasted/)")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--layer", default="blocks.6")
    parser.add_argument("--query-pyramids", default="resize,canvas",
                        help="resize: the query fed at S·s pooled to G·s; canvas: the query rescaled on an S×S canvas")
    parser.add_argument("--shifts", type=int, default=1,
                        help="canvas: the box placed at N×N sub-cell positions (steps of 1/N cell), best of them")
    parser.add_argument("--backgrounds", type=int, default=8,
                        help="context: the region pasted onto N dataset photos (not the copies' own), features averaged")
    parser.add_argument("--dataset-pyramid", nargs="?", const="multi", default=None, metavar="SCALES",
                        help="also score the indexed dataset pyramid (its levels at SCALES, default all five)")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    work = Path(args.work)
    fs = FeatureSearch(work, layer=args.layer, cache_dir=args.cache_dir)
    base, model, grid = fs.cache, fs.model, fs.grid
    input_height, input_width = model.preprocessing.input_size
    levels = {s: fs.scale_level(s).cache for s in parse_scales(args.dataset_pyramid)} if args.dataset_pyramid else {}
    rows = {s: np.array([cache.index_of(p) for p in base.paths]) for s, cache in levels.items()}
    paths = base.paths
    classes = sorted({p.split("/")[0] for p in paths} - {"pasted"})

    query_pyramids = args.query_pyramids.split(",")
    methods = [{"resize": "query", "canvas": "canvas", "context": "context"}[q] for q in query_pyramids] + (
        ["dataset"] if levels else [])
    scaled_models: dict[tuple[int, int], FeatureModel] = {}
    # photos the region is pasted onto for the context pyramid: random ones, never a pasted copy's own background
    copy_backgrounds = {sorted(p for p in paths if p.startswith(f"{cls}/"))[1] for cls in classes}
    candidates = [p for p in paths if not p.startswith("pasted/") and p not in copy_backgrounds]
    backgrounds = []
    for k in np.random.default_rng(0).choice(len(candidates), args.backgrounds, replace=False):
        with Image.open(work / candidates[k]) as photo:
            backgrounds.append(photo.convert("RGB"))
    results: dict[str, list[dict]] = {}
    query_seconds: dict[tuple[str, str], list[float]] = {}  # (method, query kind): a query's five scales
    for cls in classes:
        query_path, query_row, image, box = class_query(work, paths, cls)
        for query_kind in ("image", "region"):
            per_scale: dict[str, np.ndarray] = {}
            started = time.perf_counter()
            for s in MULTI_SCALES if "canvas" in query_pyramids else ():
                shifts = [(i / args.shifts, j / args.shifts) for i in range(args.shifts) for j in range(args.shifts)]
                made = ([(query_grid(model, args.layer, grid, image, box if query_kind == "region" else None),
                          box_to_grid(box, image.size, grid))] if s == 1  # scale 1: the ordinary query, not shifted
                        else [canvas_query(model, args.layer, grid, image, box, s, query_kind == "region", shift)
                              for shift in shifts])
                placed = [placed_query(Query(*m), grid) for m in made if m is not None]
                if placed and all(p is not None for p in placed):
                    per_scale[f"canvas {s:g}"] = np.max([search(base, p, top_k=0).scores for p in placed],
                                                        axis=0).astype(np.float64)
            query_seconds.setdefault(("canvas", query_kind), []).append(time.perf_counter() - started)
            started = time.perf_counter()
            for s in MULTI_SCALES if "context" in query_pyramids else ():
                if s == 1:
                    made = [(query_grid(model, args.layer, grid, image, box if query_kind == "region" else None),
                             box_to_grid(box, image.size, grid))]
                else:
                    made = [canvas_query(model, args.layer, grid, image, box, s, True, background=bg) for bg in backgrounds]
                if all(m is not None for m in made):
                    averaged = Query(np.mean([m[0] for m in made], axis=0), made[0][1])
                    if (placed := placed_query(averaged, grid)) is not None:
                        per_scale[f"context {s:g}"] = search(base, placed, top_k=0).scores.astype(np.float64)
            query_seconds.setdefault(("context", query_kind), []).append(time.perf_counter() - started)
            started = time.perf_counter()
            for s in MULTI_SCALES if "resize" in query_pyramids else ():
                size = (max(16, round(input_height * s)), max(16, round(input_width * s)))
                scaled_grid = max(1, round(grid * s))
                if size not in scaled_models:
                    scaled_models[size] = model.at_input_size(size)
                features = query_grid(scaled_models[size], args.layer, scaled_grid, image,
                                      box if query_kind == "region" else None)
                placed = placed_query(Query(features, box_to_grid(box, image.size, scaled_grid)), grid)
                if placed is not None:
                    per_scale[f"query {s:g}"] = search(base, placed, top_k=0).scores.astype(np.float64)
            query_seconds.setdefault(("query", query_kind), []).append(time.perf_counter() - started)
            base_query = Query(features=query_grid(model, args.layer, grid, image, box if query_kind == "region" else None),
                               grid_mask=box_to_grid(box, image.size, grid))
            for s, cache in levels.items():
                placed = placed_query(base_query, cache.grid)
                if placed is not None:
                    per_scale[f"dataset {s:g}"] = search(cache, placed, top_k=0).scores[rows[s]].astype(np.float64)
            for method in methods:
                for name, scales in SCALE_SETS:
                    if method != methods[0] and name == "scale 1":
                        continue  # the same search as the first method's scale 1
                    if method == "dataset" and not set(scales) <= set(levels):
                        continue  # a level not asked for
                    keys = [f"{method} {s:g}" for s in scales if f"{method} {s:g}" in per_scale]
                    scores = np.max([per_scale[k] for k in keys], axis=0)
                    scores[query_row] = -np.inf
                    ranks = {f: int((scores > scores[paths.index(f"pasted/{cls}-x{f}.jpg")]).sum()) + 1 for f in FACTORS}
                    top20 = top_k_indices(scores, 20)
                    precision = float(np.mean([paths[i].split("/")[0] == cls for i in top20]))
                    key = f"{query_kind} query, {method if name != 'scale 1' else '-'} pyramid, {name}"
                    results.setdefault(key, []).append({"ranks": ranks, "precision@20": precision,
                                                        "scales used": len(keys)})

    table = [("| query | pyramid | scales | x0.5 copies in the top 5 | x0.5 ranks | x1.6 copies in the top 5 "
              "| x1.6 ranks | label precision@20 |"), "|---|---|---|---|---|---|---|---|"]
    for key, found in sorted(results.items()):
        cells = [part.strip() for part in key.split(",", 2)]
        r05, r16 = ([r["ranks"][f] for r in found] for f in FACTORS)
        table.append(f"| {' | '.join(cells)} | {sum(r <= 5 for r in r05)} | {r05} | {sum(r <= 5 for r in r16)} | {r16} "
                     f"| {np.mean([r['precision@20'] for r in found]):.3f} |")
    timing = ("query time, all five scales (model passes and searches), median ms: " + ", ".join(
        f"{method} pyramid {kind} query {1000 * float(np.median(seconds)):.0f}"
        for (method, kind), seconds in query_seconds.items() if method in methods))
    print("\n".join(table))
    print(timing)
    if args.record:
        body = [f"- date: {now()}", f"- command: `{command_line()}`", f"- machine: {machine()}",
                (f"- images: {len(paths)} ({len(classes) * len(FACTORS)} pasted copies among them), "
                 f"layer {args.layer} ({grid}×{grid})"), f"- {timing}", "", *table]
        append_results(f"Scale-tolerant search: query pyramid vs dataset pyramid ({now()})", "\n".join(body))
    print(json.dumps({"images": len(paths), "layer": args.layer}))


if __name__ == "__main__":
    main()
