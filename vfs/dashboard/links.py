"""A search as URL parameters, so a copied link reproduces it for a collaborator.

Parameters (all optional): ``data`` (dataset folder), ``model``, ``layer``, ``grid``, ``q`` (query
image, relative to the dataset folder) or ``u`` (an uploaded query image kept on the server, see
:mod:`vfs.dashboard.uploads`), the region as ``box=x0,y0,x1,y1`` (query image pixels)
or ``mask=G.<base64url>`` (the G×G cell weights, one byte each, zlib-compressed), ``k`` (results)
``x`` (``1`` leaves the query image out of the results), ``a`` (``1``: the approximate search of
the cache's shortlist) and ``labels`` (the gallery's label filter, comma-separated; a label with a
comma in its name cannot be named, so it is left out), ``cluster`` (the gallery's Dataset-map filter: the map's
levels and a cluster id, ``6,24:3.1``), ``mode`` (the gallery's filter to one mode of the top matches, numbered from
1 as the page shows them), ``sc`` (``multi``: objects of any size, ½ to 2× the region's; ``1``: as drawn) and ``r`` (repeated, one per region of a region set: ``p`` or ``n`` for a
region to look for or a negative, then ``box:x0,y0,x1,y1`` or ``mask:G.<data>``, ``@``, and the
image as ``q:<path>`` or ``u:<upload id>``; at most :data:`MAX_SET_REGIONS`).

Decoding never raises for a bad parameter: it keeps what is valid and reports each problem
as a :class:`ShareError` message meant for the person who opened the link.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from vfs.dashboard.uploads import UPLOAD_ID_LENGTH, is_upload_id
from vfs.errors import MaskError, VfsError
from vfs.similarity.region import WEIGHT_LEVELS, Region

MAX_GRID = 64
MAX_TOP_K = 100
_MAX_TEXT = 500
# ASCII digits, and few enough for int(): str.isdigit() also accepts '²', which int() refuses
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,9}")


MAX_SET_REGIONS = 8
MAX_MODE = 64
# a Dataset map's cluster: its levels (clusters at each level, as the map page's sliders give them), then its id
_MAP_CLUSTER = re.compile(r"([0-9]{1,3}(?:,[0-9]{1,3})?):([0-9]{1,3}(?:\.[0-9]{1,3})*)")


class ShareError(VfsError):
    """A link parameter that is malformed or no longer fits the data."""


@dataclass(frozen=True)
class SharedSearch:
    dataset: str | None = None
    model: str | None = None
    layer: str | None = None
    grid: int | None = None
    query: str | None = None  # POSIX path relative to the dataset folder
    upload: str | None = None  # id of an uploaded query image (instead of ``query``)
    region: Region | None = None
    top_k: int | None = None
    exclude_query: bool | None = None
    approximate: bool | None = None
    labels: tuple[str, ...] | None = None  # the gallery shows only images with these labels
    any_size: bool | None = None  # search every scale of MULTI_SCALES (sc=multi) or the drawn size (sc=1)
    region_alone: bool | None = None  # the region's features without its photo (alone=1)
    regions: tuple[SharedRegion, ...] | None = None  # a region set (r=), each from its own image
    cluster: MapCluster | None = None  # the gallery shows only this Dataset-map cluster's images
    mode: int | None = None  # the gallery shows only this mode of the top matches (from 1)


@dataclass(frozen=True)
class MapCluster:
    """A cluster of the Dataset map: the map's levels (clusters per level) and the cluster's id there."""

    levels: tuple[int, ...]
    cluster_id: str


@dataclass(frozen=True)
class SharedRegion:
    """One region of a linked region set: exactly one of ``query`` (dataset path) or ``upload`` (upload id)."""

    region: Region
    negative: bool = False
    query: str | None = None
    upload: str | None = None


def encode_mask(grid_mask: np.ndarray) -> str:
    levels = np.round(np.clip(grid_mask, 0.0, 1.0) * WEIGHT_LEVELS).astype(np.uint8)
    packed = base64.urlsafe_b64encode(zlib.compress(levels.tobytes(), 9)).decode("ascii").rstrip("=")
    return f"{grid_mask.shape[0]}.{packed}"


def decode_mask(text: str) -> np.ndarray:
    size_text, _, packed = text.partition(".")
    if not _WHOLE_NUMBER.fullmatch(size_text) or not 1 <= int(size_text) <= MAX_GRID or not packed:
        raise ShareError(f"mask={text[:40]!r} is not of the form G.<data> with 1 ≤ G ≤ {MAX_GRID}.")
    grid = int(size_text)
    damaged = ShareError("mask= is damaged (not valid base64/zlib data); was the link cut short?")
    try:
        compressed = base64.b64decode(packed + "=" * (-len(packed) % 4), altchars=b"-_", validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, grid * grid + 1)  # bounded: no decompression bomb
    except (binascii.Error, ValueError, zlib.error):
        raise damaged from None
    if not inflater.eof and len(raw) <= grid * grid:
        raise damaged
    if len(raw) != grid * grid:
        raise ShareError(f"mask= holds {len(raw)} cells but a {grid}×{grid} grid needs {grid * grid}.")
    weights = np.frombuffer(raw, dtype=np.uint8).reshape(grid, grid).astype(np.float32) / WEIGHT_LEVELS
    if not weights.any():
        raise ShareError("mask= selects no cell.")
    return weights


def _last(value: str | list[str]) -> str:
    return value[-1] if isinstance(value, list) else value


def _text(name: str, value: str) -> str:
    if not value.strip() or len(value) > _MAX_TEXT:
        raise ShareError(f"{name}= must be a non-empty text of at most {_MAX_TEXT} characters.")
    return value.strip()


def _integer(name: str, value: str, low: int, high: int) -> int:
    if not _WHOLE_NUMBER.fullmatch(value.strip()) or not low <= int(value) <= high:
        raise ShareError(f"{name}={value[:20]!r} must be a whole number from {low} to {high}.")
    return int(value)


def _query_path(value: str) -> str:
    path = PurePosixPath(_text("q", value))
    if path.is_absolute() or ".." in path.parts:
        raise ShareError(f"q={value[:80]!r} must be a path inside the dataset folder.")
    return path.as_posix()


def _upload(value: str) -> str:
    if not is_upload_id(value.strip()):
        raise ShareError(f"u={value[:40]!r} is not an upload id ({UPLOAD_ID_LENGTH} hexadecimal digits).")
    return value.strip()


def _box(value: str) -> Region:
    parts = value.split(",")
    if len(parts) != 4 or not all(_WHOLE_NUMBER.fullmatch(p.strip()) for p in parts):
        raise ShareError(f"box={value[:40]!r} must be four whole numbers x0,y0,x1,y1.")
    x0, y0, x1, y1 = (int(p) for p in parts)
    if min(x0, y0) < 0:
        raise ShareError(f"box={value} starts outside the image (negative coordinates).")
    try:
        return Region(box=(x0, y0, x1, y1))
    except MaskError as exc:
        raise ShareError(f"box={value}: {exc}") from None


def _labels(value: str) -> tuple[str, ...]:
    labels = tuple(label.strip() for label in _text("labels", value).split(",") if label.strip())
    if not labels:
        raise ShareError("labels= names no label.")
    return labels


def _map_cluster(value: str) -> MapCluster:
    found = _MAP_CLUSTER.fullmatch(value.strip())
    if found is None:
        raise ShareError(f"cluster={value[:40]!r} must be the map's levels and a cluster id, e.g. 6,24:3.1.")
    return MapCluster(tuple(int(level) for level in found.group(1).split(",")), found.group(2))


def _region_text(region: Region) -> str:
    if region.box is not None:
        return "box:" + ",".join(str(v) for v in region.box)
    assert region.grid_mask is not None
    return "mask:" + encode_mask(region.grid_mask)


def encode_set_region(shared: SharedRegion) -> str:
    source = f"q:{shared.query}" if shared.query is not None else f"u:{shared.upload}"
    return f"{'n' if shared.negative else 'p'}{_region_text(shared.region)}@{source}"


def decode_set_region(value: str) -> SharedRegion:
    """One ``r=`` value; the region part never holds ``@`` (digits, commas, base64url), so the first ``@`` ends it."""
    shown = value[:60]
    sign, body = value[:1], value[1:]
    region_text, at, source = body.partition("@")
    if sign not in ("p", "n") or not at:
        raise ShareError(f"r={shown!r} must be p or n, a box: or mask: region, @ and q:<image> or u:<upload>.")
    kind, _, data = region_text.partition(":")
    if kind == "box":
        region = _box(data)
    elif kind == "mask":
        region = Region(grid_mask=decode_mask(data))
    else:
        raise ShareError(f"r={shown!r}: the region must start with box: or mask:.")
    source_kind, _, reference = source.partition(":")
    if source_kind == "q":
        return SharedRegion(region, sign == "n", query=_query_path(reference))
    if source_kind == "u":
        return SharedRegion(region, sign == "n", upload=_upload(reference))
    raise ShareError(f"r={shown!r}: the image must be q:<path in the dataset> or u:<upload id>.")


def _set_regions(values: list[str]) -> tuple[tuple[SharedRegion, ...], list[ShareError]]:
    regions, problems = [], []
    for value in values[:MAX_SET_REGIONS]:
        try:
            regions.append(decode_set_region(value))
        except ShareError as exc:
            problems.append(exc)
    if len(values) > MAX_SET_REGIONS:
        problems.append(ShareError(f"The link names {len(values)} regions (r=); only the first {MAX_SET_REGIONS} "
                                   "are used."))
    return tuple(regions), problems


def to_params(state: SharedSearch) -> dict[str, str | list[str]]:
    """The URL parameters of ``state`` (unset fields are left out); ``r`` is a list (a repeated parameter)."""
    params: dict[str, str | list[str]] = {}
    for name, value in (("data", state.dataset), ("model", state.model), ("layer", state.layer),
                        ("grid", state.grid), ("q", state.query), ("u", state.upload), ("k", state.top_k)):
        if value is not None:
            params[name] = str(value)
    for name, flag in (("x", state.exclude_query), ("a", state.approximate), ("alone", state.region_alone)):
        if flag is not None:
            params[name] = "1" if flag else "0"
    nameable = [label for label in state.labels or () if "," not in label]
    if nameable:
        params["labels"] = ",".join(nameable)
    if state.region is not None and state.region.box is not None:
        params["box"] = ",".join(str(v) for v in state.region.box)
    elif state.region is not None and state.region.grid_mask is not None:
        params["mask"] = encode_mask(state.region.grid_mask)
    if state.any_size is not None:
        params["sc"] = "multi" if state.any_size else "1"
    if state.cluster is not None:
        params["cluster"] = ",".join(str(level) for level in state.cluster.levels) + ":" + state.cluster.cluster_id
    if state.mode is not None:
        params["mode"] = str(state.mode)
    if state.regions:
        params["r"] = [encode_set_region(region) for region in state.regions[:MAX_SET_REGIONS]]
    return params


def from_params(params: Mapping[str, str | list[str]]) -> tuple[SharedSearch, list[ShareError]]:
    """What a link asks for, and one error per parameter that could not be used (``r`` may repeat: pass its
    values as a list)."""
    values = {name: _last(value) for name, value in params.items() if not isinstance(value, list) or value}
    problems: list[ShareError] = []
    fields: dict[str, object] = {}

    def take(field: str, name: str, parse: Callable[[str], object]) -> None:
        if name in values:
            try:
                fields[field] = parse(values[name])
            except ShareError as exc:
                problems.append(exc)

    take("dataset", "data", lambda v: _text("data", v))
    take("model", "model", lambda v: _text("model", v))
    take("layer", "layer", lambda v: _text("layer", v))
    take("grid", "grid", lambda v: _integer("grid", v, 1, MAX_GRID))
    if "q" in values and "u" in values:
        problems.append(ShareError("The link names both a dataset image (q=) and an upload (u=); "
                                   "it can hold only one."))
    else:
        take("query", "q", _query_path)
        take("upload", "u", _upload)
    take("top_k", "k", lambda v: _integer("k", v, 1, MAX_TOP_K))
    for field_name, name in (("exclude_query", "x"), ("approximate", "a"), ("region_alone", "alone")):
        if name in values:
            if values[name] in ("0", "1"):
                fields[field_name] = values[name] == "1"
            else:
                problems.append(ShareError(f"{name}={values[name][:20]!r} must be 0 or 1."))
    take("labels", "labels", _labels)
    take("cluster", "cluster", _map_cluster)
    take("mode", "mode", lambda v: _integer("mode", v, 1, MAX_MODE))
    if "box" in values and "mask" in values:
        problems.append(ShareError("The link has both box= and mask=; it can hold only one region."))
    else:
        take("region", "box", _box)
        take("region", "mask", lambda v: Region(grid_mask=decode_mask(v)))
    if "sc" in values:
        if values["sc"] in ("multi", "1"):
            fields["any_size"] = values["sc"] == "multi"
        else:
            problems.append(ShareError(f"sc={values['sc'][:20]!r} must be multi (any size) or 1 (as drawn)."))
    if "r" in values:
        raw = params["r"]
        fields["regions"], region_problems = _set_regions(raw if isinstance(raw, list) else [raw])
        problems += region_problems
    if "region" in fields and "query" not in fields and "upload" not in fields:
        problems.append(ShareError("The link has a region but no usable query image (q= or u=); "
                                   "the region is ignored."))
        del fields["region"]
    return SharedSearch(**fields), problems  # type: ignore[arg-type]
