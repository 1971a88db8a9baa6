"""Why half-size copies are missed at a late layer: two changes to scale-tolerant search, probed before building either.

The data and copies are those of :mod:`bench.scales` (``--work``: the dataset folder it made, with
``pasted/``); the pyramid levels are read from their caches (``--level-caches``: that dataset's folder of
caches, which :mod:`bench.scales` built), nothing is indexed. For each class's query box (the central box
of its first photo) the ranks of its 0.5× and 1.6× copies and label precision@20 are reported for:

* the **query**: ``image`` (its grid computed on the whole query photo, as ``FeatureSearch.search`` does) or
  ``region`` (everything outside the box replaced by the model's mean colour, so the box's features carry
  nothing of the photo around it, as a pasted copy carries nothing of it);
* the **half-size level**: ``pyramid`` (the image resized to twice the model's input, as
  :mod:`vfs.similarity.scales` does) or ``tiles`` (3×3 crops of half the image's side at a stride of a quarter,
  each resized to the model's input: a cell's receptive field then ends at its crop's border, as the query's
  ends at its photo's; an image's score is its best over tiles). Tile grids are computed here, once, and kept
  in ``--tiles``.

Each search is scored over scale 1 alone, over scales 0.5 and 1, and over all five scales.

``python -m bench.scales_probe --work data/bench-scales --level-caches data/cache/bench-scales-<hash>
--layer blocks.6 [--per-class N] [--half-levels pyramid,tiles] [--tiles FILE] [--record]``
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench._common import append_results, command_line, machine, now
from bench.scales import class_query
from vfs.cache.feature_cache import FeatureCache, cell_norms2
from vfs.features.geometry import box_to_grid
from vfs.features.models import FeatureModel, load_model
from vfs.similarity.exact import Query, get_backend, search
from vfs.similarity.ranking import top_k_indices
from vfs.similarity.scales import MULTI_SCALES, placed_query, scale_level

FACTORS = ("0.5", "1.6")
#: Tiles of half the image's side at a stride of a quarter: any box of up to a quarter of the side lies
#: wholly inside one of them (a 0.5× copy of a central half box spans a quarter).
TILE_SIDE = 0.5
TILE_STARTS = (0.0, 0.25, 0.5)


def level_cache(caches: Path, model: FeatureModel, layer: str, grid: int, scale: float) -> FeatureCache:
    """The cache of pyramid level ``scale``: the one whose input size and grid are that level's."""
    level = scale_level(scale, model.preprocessing.input_size, grid)
    for folder in sorted(caches.glob(f"*--{layer}--g{level.grid}--*")):
        cache = FeatureCache.open(folder)
        if tuple(cache.spec.preprocessing["input_size"]) == level.input_size:
            return cache
    raise SystemExit(f"No cache of {layer} at {level.input_size} with grid {level.grid} in {caches}.")


def tile_grids(model: FeatureModel, layer: str, grid: int, image: Image.Image) -> np.ndarray:
    """(9, C, G, G) float16: the 3×3 tiles of ``image``, each fed at the model's input size."""
    width, height = image.size
    crops = [model.preprocessing.normalised(image.crop((round(x * width), round(y * height),
                                                         round((x + TILE_SIDE) * width), round((y + TILE_SIDE) * height))))
             for y in TILE_STARTS for x in TILE_STARTS]
    return model.grid_features(model.preprocessing.batch(crops), model.layer(layer), grid).numpy().astype(np.float16)


def region_only_grid(model: FeatureModel, layer: str, grid: int, image: Image.Image,
                     box: tuple[float, float, float, float]) -> np.ndarray:
    """The query grid of ``image`` with everything outside ``box`` set to the model's mean colour (zero input)."""
    canvas = Image.new("RGB", image.size, tuple(round(255 * m) for m in model.preprocessing.mean))
    pixels = tuple(round(v) for v in box)
    canvas.paste(image.crop(pixels), pixels[:2])
    grids = model.grid_features(model.preprocessing(canvas)[None], model.layer(layer), grid)
    return grids[0].numpy().astype(np.float16).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="the dataset folder bench.scales made (photos and pasted/)")
    parser.add_argument("--level-caches", required=True, help="that dataset's folder of caches")
    parser.add_argument("--layer", default="blocks.6")
    parser.add_argument("--tiles", default=None, help="where tile grids are kept between runs (default: in --work)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="only the first N photos of each class (and the copies): tiles cost 9 forward passes an image")
    parser.add_argument("--half-levels", default="pyramid,tiles", help="which half-size levels to compare")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    halves = args.half_levels.split(",")

    work, model = Path(args.work), load_model()
    base = level_cache(Path(args.level_caches), model, args.layer, model.layer(args.layer).default_grid, 1.0)
    grid = base.grid
    by_class: dict[str, list[str]] = {}
    for path in base.paths:
        by_class.setdefault(path.split("/")[0], []).append(path)
    paths = [p for folder, ps in sorted(by_class.items()) for p in (ps if folder == "pasted" else sorted(ps)[:args.per_class])]
    levels = {s: level_cache(Path(args.level_caches), model, args.layer, grid, s) for s in MULTI_SCALES}
    rows = {s: np.array([cache.index_of(p) for p in paths]) for s, cache in levels.items()}

    store = Path(args.tiles or work / f"tiles-{args.layer}.pkl")
    tiles: dict[str, np.ndarray] = pickle.loads(store.read_bytes()) if store.exists() else {}
    started = time.perf_counter()
    missing = [p for p in paths if p not in tiles] if "tiles" in halves else []
    for k, path in enumerate(missing, start=1):
        with Image.open(work / path) as image:
            tiles[path] = tile_grids(model, args.layer, grid, image.convert("RGB"))
        if k % 100 == 0 or k == len(missing):
            store.write_bytes(pickle.dumps(tiles))
            print(f"tiles {k}/{len(missing)} {time.perf_counter() - started:.0f} s", flush=True)
    tile_stack = np.ascontiguousarray(np.concatenate([tiles[p] for p in paths])) if "tiles" in halves else None
    tile_norms = cell_norms2(tile_stack) if tile_stack is not None else None
    backend = get_backend("torch-cpu")

    classes = sorted({p.split("/")[0] for p in paths} - {"pasted"})
    results: dict[str, list[dict]] = {}
    for cls in classes:
        query_path, query_row, image, box = class_query(work, paths, cls)
        features = {"image": base.features(base.index_of(query_path)).astype(np.float32),
                    "region": region_only_grid(model, args.layer, grid, image, box)}
        for query_kind, grid_features in features.items():
            query = Query(grid_features, box_to_grid(box, image.size, grid))
            per_level = {}
            for s, cache in levels.items():
                placed = placed_query(query, cache.grid)
                if placed is not None:
                    per_level[f"pyramid {s:g}"] = search(cache, placed, top_k=0).scores[rows[s]].astype(np.float64)
            if tile_stack is not None:
                tile_scores = backend.window_scores(tile_stack, tile_norms, query).reshape(len(paths), -1)
                per_level["tiles 0.5"] = tile_scores.max(axis=1).astype(np.float64)
            for half in halves:
                for name, scales in (("scale 1", (1.0,)), ("0.5, 1", (0.5, 1.0)), ("multi", MULTI_SCALES)):
                    if half == "tiles" and name == "scale 1":
                        continue
                    keys = [f"tiles {s:g}" if (s == 0.5 and half == "tiles") else f"pyramid {s:g}" for s in scales]
                    scores = np.max([per_level[k] for k in keys if k in per_level], axis=0)
                    scores[query_row] = -np.inf
                    ranks = {f: int((scores > scores[paths.index(f"pasted/{cls}-x{f}.jpg")]).sum()) + 1 for f in FACTORS}
                    top20 = top_k_indices(scores, 20)
                    precision = float(np.mean([paths[i].split("/")[0] == cls for i in top20]))
                    key = f"{query_kind} query, {half if name != 'scale 1' else '-'}, {name}"
                    results.setdefault(key, []).append({"ranks": ranks, "precision@20": precision})

    table = [("| query | half-size level | scales | x0.5 copies in the top 5 | x0.5 ranks | x1.6 copies in the top 5 "
              "| x1.6 ranks | label precision@20 |"), "|---|---|---|---|---|---|---|---|"]
    for key, rows_ in results.items():
        cells = [part.strip() for part in key.split(",", 2)]
        r05, r16 = ([r["ranks"][f] for r in rows_] for f in FACTORS)
        table.append(f"| {' | '.join(cells)} | {sum(r <= 5 for r in r05)} | {r05} | {sum(r <= 5 for r in r16)} | {r16} "
                     f"| {np.mean([r['precision@20'] for r in rows_]):.3f} |")
    print("\n".join(table))
    if args.record:
        body = [f"- date: {now()}", f"- command: `{command_line()}`", f"- machine: {machine()}",
                (f"- images: {len(paths)} ({len(classes) * len(FACTORS)} pasted copies among them), "
                 f"layer {args.layer} ({grid}×{grid})"), "", *table]
        append_results(f"Scale-tolerant search at a late layer: query and level variants ({now()})", "\n".join(body))
    print(json.dumps({"images": len(paths), "layer": args.layer}))


if __name__ == "__main__":
    main()
