"""The ``vfs`` command line: models, layers, index, search."""

from __future__ import annotations

import argparse
import json
import sys

from vfs._progress import ProgressBar
from vfs.cache.indexing import DEFAULT_CACHE_DIR, IndexSummary
from vfs.errors import VfsError
from vfs.features.extraction import list_engines


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 in pixels, got {text!r}")
    return values  # type: ignore[return-value]


def _scales(text: str) -> tuple[float, ...]:
    from vfs.similarity.scales import parse_scales

    try:
        return parse_scales(text)
    except VfsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="timm model name (default: %(default)s)")
    parser.add_argument("--weights", default=None,
                        help="auto (default), bundled, pretrained, untrained, or a .safetensors/.pth file")
    parser.add_argument("--layer", default=None, help="layer name (see `vfs layers MODEL`; default: the model's)")
    parser.add_argument("--grid", type=int, default=None, help="grid size G (default: layer size, at most 14)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                        help="where caches live (default: %(default)s); a pyarrow.fs URI such as s3://bucket/caches "
                             "is mirrored in ~/.cache/vfs/mirrors")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2,
                        help="image decoding threads (local engine) or model actors (ray engine)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--shard-images", type=int, default=512,
                        help="images per shard, the unit an interrupted run resumes from (default: %(default)s)")
    parser.add_argument("--engine", default="local", choices=list_engines(),
                        help="where features are extracted: local, or ray (Ray Data actors; joins the cluster "
                             "named by RAY_ADDRESS, else starts a local Ray; needs pip install 'vfs[ray]')")
    parser.add_argument("--scales", type=_scales, default=(1.0,),
                        help="object sizes in dataset images relative to the query, e.g. 0.5,1,2, or 'multi' "
                             "(0.5,0.71,1,1.41,2); each scale is an image-pyramid level, indexed once (default: 1)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vfs", description="Visual Feature Search")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list models (bundled offline weights first)")
    models.add_argument("--pretrained", action="store_true", help="list timm's pretrained tags instead")
    models.add_argument("--json", action="store_true")

    layers = commands.add_parser("layers", help="list a model's layers with C×H×W")
    layers.add_argument("model")
    layers.add_argument("--weights", default=None)
    layers.add_argument("--json", action="store_true")

    index = commands.add_parser("index", help="build or update the feature cache of a folder")
    index.add_argument("data", help="folder of images (searched recursively), or a pyarrow.fs URI such as "
                                    "s3://bucket/photos")
    _add_model_args(index)
    index.add_argument("--ann", action="store_true",
                       help="also build the approximate shortlist for `search --approximate` "
                            "(needs pip install 'vfs[ann]')")

    find = commands.add_parser("search", help="find the images most similar to a region of a query image")
    find.add_argument("data", help="folder of images or pyarrow.fs URI; what is not yet indexed is indexed first")
    _add_model_args(find)
    find.add_argument("--query", help="query image (in the dataset or not); with --box or --mask")
    region = find.add_mutually_exclusive_group()
    region.add_argument("--box", type=_box, help="X0,Y0,X1,Y1 in the query image's pixels")
    region.add_argument("--mask", help="mask PNG of the query image's size (white or opaque = selected)")
    region.add_argument("--regions", help="instead of --query: a JSON list of regions, each {\"image\": PATH, "
                                          "\"box\": [X0, Y0, X1, Y1]} or {\"image\": PATH, \"mask\": PNG}, with an "
                                          "optional \"negative\": true; paths relative to the JSON file")
    find.add_argument("--negative-weight", type=float, default=1.0,
                      help="with --regions: how much the closest negative region counts against a result")
    find.add_argument("--modes", type=int, nargs="?", const=200, default=None, metavar="N",
                      help="group the top N matches (default 200) into modes by their matched windows")
    find.add_argument("--top-k", type=int, default=20)
    find.add_argument("--exclude-query", action="store_true", help="leave the query image out of the results")
    find.add_argument("--region-alone", action="store_true",
                      help="the region's features without the photo around it (pasted onto a few dataset photos, "
                           "averaged): a late layer then matches the object, not its scene; costs 8 model passes")
    find.add_argument("--approximate", action="store_true",
                      help="score only the candidates of the shortlist (built by `vfs index --ann`) exactly")
    find.add_argument("--candidates", type=int, default=None,
                      help="images the shortlist proposes with --approximate (default: 1000 for a one-cell "
                           "region, else 4000)")
    info = commands.add_parser("info", help="what search runs on here: CPU features, kernel ISA and why, threads, "
                                             "torch/CUDA, where the kernel was built")
    info.add_argument("--json", action="store_true")
    return parser


def _print_info(as_json: bool) -> None:
    from vfs.similarity.kernel import info

    report = info()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    kernel, threads, torch = report["kernel"], report["threads"], report["torch"]
    features = " ".join(name for name, present in report["cpu_features"].items() if present) or "-"
    print(f"machine: {report['machine']} {report['system']} · Python {report['python']}")
    print(f"CPU features: {features}")
    print(f"search backend: {kernel['backend']} (kernel ISA {kernel['isa'] or '-'}: {kernel['reason']})")
    print(f"kernel: {kernel['path'] or 'not built'}" + (f" · {kernel['built_with']}" if kernel["built_with"] else "")
          + f" · built {', '.join(kernel['isas_built']) or '-'} · runnable {', '.join(kernel['isas_runnable']) or '-'}")
    print(f"threads: {threads['scan']} ({threads['from']}; {threads['cpus']} CPUs by {threads['cpus_from']})")
    print(f"torch: {torch.get('version', 'not installed')}" + (f" · CUDA {'yes' if torch['cuda'] else 'no'}"
                                                              if torch["installed"] else ""))


def _print_summary(summary: IndexSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    print(f"cache: {summary.cache_dir}", file=sys.stderr)
    for problem in summary.repaired:
        print(f"repaired: {problem}", file=sys.stderr)
    for item in summary.skipped:
        print(f"skipped: {item.path}: {item.reason}", file=sys.stderr)
    state = " (cancelled)" if summary.cancelled else ""
    print(f"indexed {summary.indexed} · unchanged {summary.unchanged} · removed {summary.removed} · "
          f"skipped {len(summary.skipped)} · {summary.images} images in cache · "
          f"{summary.seconds:.1f} s{state}", file=sys.stderr)


def _feature_search(args: argparse.Namespace):  # -> FeatureSearch; imported lazily (torch is slow to import)
    from vfs.feature_search import FeatureSearch

    return FeatureSearch(args.data, model=args.model, layer=args.layer, grid=args.grid, weights=args.weights,
                         cache_dir=args.cache_dir, device=args.device)


def _run(args: argparse.Namespace) -> int:
    if args.command == "info":
        _print_info(args.json)
        return 0
    if args.command == "models":
        from vfs.features.models import list_models, weights_available

        names = list_models(pretrained=args.pretrained)
        if args.json:
            print(json.dumps([{"name": n, "offline_weights": weights_available(n)} for n in names]))
        else:
            for name in names:
                available = weights_available(name)
                print(f"{name}  [{available}]" if available else name)
        return 0
    if args.command == "layers":
        from vfs.features.models import load_model

        model = load_model(args.model, args.weights)
        if args.json:
            print(json.dumps([layer.to_dict() for layer in model.layers]))
        else:
            print(f"{model.label} · weights: {model.weights} · input {model.preprocessing.input_size}")
            for layer in model.layers:
                default = "  (default)" if layer == model.default_layer else ""
                print(f"  {layer.describe()}{default}")
        return 0

    fs = _feature_search(args)
    progress = None if args.json else ProgressBar(f"{fs.model.label} {fs.layer.name}")
    summary = fs.index(args.batch_size, args.workers, progress, shard_images=args.shard_images, engine=args.engine)
    levels = {}  # the image-pyramid levels of the other scales, indexed after the base
    for scale in (s for s in args.scales if s != 1.0 and not summary.cancelled):
        level = fs.scale_level(scale)
        width = level.card.preprocessing.input_size[1]
        level_progress = None if args.json else ProgressBar(f"scale {scale:g}: {width}px")
        levels[scale] = level.index(args.batch_size, args.workers, level_progress, shard_images=args.shard_images,
                                    engine=args.engine)
    if args.command == "index":
        if args.ann and not summary.cancelled:
            fs.build_shortlist()
        if args.json:
            print(json.dumps({**summary.to_dict(), "scale_levels": [{"scale": scale, **level.to_dict()}
                                                                    for scale, level in levels.items()]}, indent=2))
            return 0
        _print_summary(summary, False)
        for level in levels.values():
            _print_summary(level, False)
        return 0
    if not args.json:
        _print_summary(summary, False)
        for level in levels.values():
            _print_summary(level, False)
    if args.regions:
        return _search_regions(fs, args)
    if args.query is None or (args.box is None and args.mask is None):
        raise VfsError("Give --query with --box or --mask, or --regions.")
    result = fs.search(args.query, mask=args.mask, box=args.box, top_k=args.top_k, exclude_query=args.exclude_query,
                       approximate=args.approximate, candidates=args.candidates, scales=args.scales,
                       region_alone=args.region_alone)
    approximate = {"approximate": True, "candidates": result.candidates} if args.approximate else {"approximate": False}
    modes = {"modes": [mode.to_dict(fs.cache) for mode in _modes(fs, result, args.modes)]} if args.modes else {}
    if args.json:
        print(json.dumps({"model": fs.model.label, "layer": fs.layer.name, "grid": [fs.grid, fs.grid],
                          "n_images": len(fs.cache), "grid_mask": result.grid_mask.round(6).tolist(),
                          "scales": list(args.scales), "region_alone": args.region_alone,
                          **approximate, "results": [{**m.to_dict(), "label_name": fs.label_name(m.label)}
                                                      for m in result.matches], **modes}, indent=2))
    else:
        note = (f" · approximate: the shortlist's {result.candidates} candidates scored exactly"
                if args.approximate else "")
        print(f"{len(fs.cache)} images searched in {result.seconds * 1000:.1f} ms ({result.backend}){note}")
        for rank, match in enumerate(result.matches, start=1):
            box = ",".join(f"{v:.0f}" for v in match.box)
            scale = f"  scale {match.scale:g}" if len(args.scales) > 1 else ""
            print(f"{rank:3d}. {match.score:.4f}  {match.path}  [{fs.label_name(match.label) or '-'}]  box {box}{scale}")
        _print_modes(modes)
    return 0


def _print_modes(modes: dict) -> None:
    for number, mode in enumerate(modes.get("modes", []), start=1):
        labels = ", ".join(f"{count} {label or '-'}" for label, count in mode["labels"].items())
        print(f"mode {number}: {mode['size']} matches ({labels}); e.g. {', '.join(mode['exemplars'][:3])}")


def _modes(fs, result, matches: int):  # -> list[MatchMode]; scipy is imported only when asked for
    from vfs.analysis.match_modes import search_modes

    return search_modes(fs, result, n=matches)


def _read_regions(path: str) -> list:  # -> list[QueryRegion]
    """The regions of a --regions file; image and mask paths are relative to the file's folder."""
    from pathlib import Path

    from vfs.feature_search import QueryRegion

    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VfsError(f"Cannot read the regions file {path}: {exc}") from None
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        raise VfsError(f"{path} must hold a non-empty JSON list of region objects.")
    folder = Path(path).parent
    regions = []
    for number, item in enumerate(items, start=1):
        if "image" not in item or ("box" in item) == ("mask" in item):
            raise VfsError(f"Region {number} of {path} needs \"image\" and exactly one of \"box\" or \"mask\".")
        box = item.get("box")
        if box is not None and (not isinstance(box, list) or len(box) != 4):
            raise VfsError(f"Region {number} of {path}: \"box\" is [x0, y0, x1, y1].")
        regions.append(QueryRegion(folder / str(item["image"]), box=tuple(float(v) for v in box) if box else None,
                                   mask=folder / str(item["mask"]) if "mask" in item else None,
                                   negative=bool(item.get("negative", False))))
    return regions


def _search_regions(fs, args: argparse.Namespace) -> int:
    if args.approximate or args.query:
        raise VfsError("--regions cannot be combined with --query or --approximate.")
    result = fs.search_regions(_read_regions(args.regions), top_k=args.top_k, exclude_query=args.exclude_query,
                               negative_weight=args.negative_weight, scales=args.scales,
                               region_alone=args.region_alone)
    modes = {"modes": [mode.to_dict(fs.cache) for mode in _modes(fs, result, args.modes)]} if args.modes else {}
    if args.json:
        print(json.dumps({"model": fs.model.label, "layer": fs.layer.name, "grid": [fs.grid, fs.grid],
                          "n_images": len(fs.cache), "negative": result.negative,
                          "negative_weight": result.negative_weight, "scales": list(args.scales),
                          "region_alone": args.region_alone,
                          "results": [{**m.to_dict(), "label_name": fs.label_name(m.label)}
                                      for m in result.matches], **modes}, indent=2))
        return 0
    print(f"{len(fs.cache)} images searched for {len(result.negative)} regions in {result.seconds * 1000:.1f} ms "
          f"({result.backend})")
    for rank, match in enumerate(result.matches, start=1):
        boxes = "  ".join(",".join(f"{v:.0f}" for v in box) + (f" (scale {scale:g})" if len(args.scales) > 1 else "")
                          for box, scale in zip(match.boxes, match.scales))
        print(f"{rank:3d}. {match.score:.4f}  {match.path}  [{match.label or '-'}]  boxes {boxes}")
    _print_modes(modes)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except VfsError as exc:
        print(f"vfs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vfs: interrupted; completed shards are kept and the next run resumes from them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
