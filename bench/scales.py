"""What scale-tolerant search brings: pasted copies found at other sizes, label precision, and the cost.

The dataset is every photo of ``--data`` (imagenette-val by default, linked, not copied) plus 20
made ones: the central box (the middle half of width and height) of the first photo of each of 10
classes, pasted onto a photo of the next class at 0.5× and at 1.6× its size relative to the image.
For each query box, the rank of its two copies is reported for ``scales=(1,)`` and for the
multi-scale default, each with the region's features computed on its photo (``image``, the default)
and on its own (``region_alone=True``), at a 14×14 and a 7×7 layer of lite0; so is label precision@20
of the 10 query boxes (the copies count as wrong labels; and with the copies left out), the query
time, and each pyramid level's indexing time and cache size.

``python -m bench.scales --data ../shared/datasets/imagenette-val [--per-class N] [--record]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench._common import append_results, command_line, machine, now
from vfs import FeatureSearch
from vfs.features.images import IMAGE_EXTENSIONS
from vfs.features.region_alone import BACKGROUNDS
from vfs.similarity.scales import MULTI_SCALES

FACTORS = (0.5, 1.6)
LAYERS = ("blocks.4", "blocks.6")
#: (column, scales, region alone)
CONFIGS = (("scale 1", (1.0,), False), ("multi", MULTI_SCALES, False),
           ("scale 1, region alone", (1.0,), True), ("multi, region alone", MULTI_SCALES, True))


def central_box(size: tuple[int, int]) -> tuple[float, float, float, float]:
    width, height = size
    return width / 4, height / 4, 3 * width / 4, 3 * height / 4


def class_query(work: Path, paths: list[str], cls: str) -> tuple[str, int, Image.Image, tuple[float, ...]]:
    """A class's query for the probes: its first photo (path, row in ``paths``), as RGB, and its central box."""
    query_path = min(p for p in paths if p.startswith(f"{cls}/"))
    with Image.open(work / query_path) as image:
        image = image.convert("RGB")
    return query_path, paths.index(query_path), image, central_box(image.size)


def build_dataset(source: Path, target: Path, per_class: int | None,
                  classes: int = 10) -> list[tuple[str, dict[float, str]]]:
    """Link the photos of ``source`` (the first ``per_class`` of each class, or all) into ``target`` and paste
    the copies; (query, {factor: copy}) pairs."""
    folders = sorted(p for p in source.iterdir() if p.is_dir())[:classes]
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True, exist_ok=True)
        for photo in sorted(folder.iterdir())[:per_class]:
            link = target / folder.name / photo.name
            if photo.suffix.lower() in IMAGE_EXTENSIONS and not link.exists():
                os.symlink(photo.resolve(), link)
    (target / "pasted").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = []
    for k, folder in enumerate(folders):
        query = sorted(folder.iterdir())[0]
        background = sorted(folders[(k + 1) % len(folders)].iterdir())[1]
        with Image.open(query) as image:
            crop = image.convert("RGB").crop(tuple(round(v) for v in central_box(image.size)))
        copies = {}
        for factor in FACTORS:
            name = f"pasted/{folder.name}-x{factor:g}.jpg"
            if not (target / name).exists():
                with Image.open(background) as bg:
                    canvas = bg.convert("RGB")
                # the crop spans half the query's width and height: its copy spans factor × half of the background's
                size = (round(canvas.width * 0.5 * factor), round(canvas.height * 0.5 * factor))
                x = int(rng.integers(0, canvas.width - size[0] + 1))
                y = int(rng.integers(0, canvas.height - size[1] + 1))
                canvas.paste(crop.resize(size, Image.Resampling.BICUBIC), (x, y))
                canvas.save(target / name, quality=95)
            copies[factor] = name
        pairs.append((f"{folder.name}/{query.name}", copies))
    return pairs


def background_draws(fs: FeatureSearch, target: Path, pairs: list[tuple[str, dict[float, str]]],
                     draws: int) -> list[dict]:
    """The multi-scale region-alone search again with ``draws`` other sets of backgrounds (random dataset photos,
    never a copy): how much its result owes to which photos the region is pasted onto."""
    photos = [row for row, path in enumerate(fs.cache.paths) if not path.startswith("pasted/")]
    found = []
    for seed in range(draws):
        fs.use_backgrounds(np.random.default_rng(seed).choice(photos, BACKGROUNDS + 1, replace=False).tolist())
        in_top5 = dict.fromkeys(FACTORS, 0)
        for query, copies in pairs:
            with Image.open(target / query) as image:
                box = central_box(image.size)
            top5 = [m.path for m in fs.search(target / query, box=box, top_k=5, exclude_query=True,
                                              scales=MULTI_SCALES, region_alone=True).matches]
            for factor, copy in copies.items():
                in_top5[factor] += copy in top5
        found.append({f"x{factor:g}": count for factor, count in in_top5.items()})
    fs.use_backgrounds(None)
    return found


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/datasets/imagenette-val")
    parser.add_argument("--work", default="data/bench-scales", help="the linked dataset with its pasted copies")
    parser.add_argument("--per-class", type=int, default=None,
                        help="link only the first N photos of each class (the pyramid costs 7.75× the base index)")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--background-draws", type=int, default=5,
                        help="also search multi-scale, region alone, with N random sets of backgrounds")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    target = Path(args.work)
    pairs = build_dataset(Path(args.data), target, args.per_class)
    report: dict = {"images": None, "scales": list(MULTI_SCALES), "layers": {}}
    for layer in args.layers.split(","):
        fs = FeatureSearch(target, layer=layer, cache_dir=args.cache_dir)
        levels = {}
        for scale in sorted(MULTI_SCALES, key=lambda s: abs(np.log(s))):
            level = fs.scale_level(scale)
            started = time.perf_counter()
            summary = level.index()
            levels[scale] = {"input": list(level.card.preprocessing.input_size), "grid": level.grid,
                             "index_s_this_run": round(time.perf_counter() - started, 1),
                             "images_per_s_when_built": round(summary.images_per_second, 1) if summary.indexed else None,
                             "cache_mb": round(folder_bytes(level.cache_path) / 1e6, 1)}
        report["images"] = len(fs.cache)
        rows = []
        for query, copies in pairs:
            with Image.open(target / query) as image:
                box = central_box(image.size)
            ranked = {}
            for name, scales, alone in CONFIGS:
                started = time.perf_counter()
                result = fs.search(target / query, box=box, top_k=len(fs.cache), exclude_query=True, scales=scales,
                                   region_alone=alone)
                seconds = time.perf_counter() - started
                order = [m.path for m in result.matches]
                photos = [m for m in result.matches if not m.path.startswith("pasted/")]
                ranked[name] = {
                    "ms": round(seconds * 1000, 1),
                    "ranks": {f"{factor:g}": order.index(copy) + 1 for factor, copy in copies.items()},
                    "copy scales": {f"{factor:g}": next(m.scale for m in result.matches if m.path == copy)
                                    for factor, copy in copies.items()},
                    "precision@20": sum(m.label == query.split("/")[0] for m in result.matches[:20]) / 20,
                    "precision@20 without copies": sum(m.label == query.split("/")[0] for m in photos[:20]) / 20,
                }
            rows.append({"query": query, **ranked})
        summary_rows = {}
        for name, _, _ in CONFIGS:
            summary_rows[name] = {
                f"x{factor:g} copies in the top 5": sum(r[name]["ranks"][f"{factor:g}"] <= 5 for r in rows)
                for factor in FACTORS}
            summary_rows[name].update({f"x{factor:g} ranks": [r[name]["ranks"][f"{factor:g}"] for r in rows]
                                       for factor in FACTORS})
            for key in ("precision@20", "precision@20 without copies"):
                summary_rows[name][f"label {key} (mean)"] = round(float(np.mean([r[name][key] for r in rows])), 3)
            summary_rows[name]["query ms (median)"] = float(np.median([r[name]["ms"] for r in rows]))
        for name in ("multi", "multi, region alone"):
            for factor in FACTORS:
                summary_rows[name][f"scale found for the x{factor:g} copies"] = [r[name]["copy scales"][f"{factor:g}"]
                                                                                 for r in rows]
        draws = background_draws(fs, target, pairs, args.background_draws)
        report["layers"][f"{layer} ({fs.grid}×{fs.grid})"] = {"levels": levels, **summary_rows, "draws": draws}
        print(json.dumps(report["layers"][f"{layer} ({fs.grid}×{fs.grid})"], indent=1))
    if args.record:
        body = [f"- date: {now()}", f"- command: `{command_line()}`", f"- machine: {machine()}",
                f"- images: {report['images']} ({len(pairs) * len(FACTORS)} pasted copies among them)",
                f"- scales: {report['scales']}", ""]
        for layer, data in report["layers"].items():
            body.append(f"**{layer}**")
            body.append("")
            names = [name for name, _, _ in CONFIGS]
            body.append("| | " + " | ".join(names) + " |")
            body.append("|---" * (len(names) + 1) + "|")
            for key in data["multi"]:
                body.append(f"| {key} | " + " | ".join(str(data[name].get(key, "")) for name in names) + " |")
            body.append("")
            if data["draws"]:
                body.append(f"Multi-scale, region alone, with {len(data['draws'])} random sets of "
                            f"{BACKGROUNDS + 1} dataset photos as backgrounds instead of the evenly spread default, "
                            "copies in the top 5: x0.5 " + str([d["x0.5"] for d in data["draws"]]) + ", x1.6 "
                            + str([d["x1.6"] for d in data["draws"]]))
                body.append("")
            body.append("| level (scale) | input | grid | cache MB | images/s when built |")
            body.append("|---|---|---|---|---|")
            for scale, level in sorted(data["levels"].items()):
                body.append(f"| {scale:g} | {level['input'][1]}×{level['input'][0]} | {level['grid']} | "
                            f"{level['cache_mb']} | {level['images_per_s_when_built']} |")
            body.append("")
        append_results(f"Scale-tolerant search ({now()})", "\n".join(body))


if __name__ == "__main__":
    main()
