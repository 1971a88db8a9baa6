"""A search as URL parameters, so a copied link reproduces it for a collaborator.

Parameters (all optional): ``data`` (dataset folder), ``model``, ``layer``, ``grid``, ``q`` (query
image, relative to the dataset folder) or ``u`` (an uploaded query image kept on the server, see
:mod:`vfs.dashboard.uploads`), the region as ``box=x0,y0,x1,y1`` (query image pixels)
or ``mask=G.<base64url>`` (the G×G cell weights, one byte each, zlib-compressed), ``k`` (results)
``x`` (``1`` leaves the query image out of the results), ``a`` (``1``: the approximate search of
the cache's shortlist) and ``labels`` (the gallery's label filter, comma-separated; a label with a
comma in its name cannot be named, so it is left out).

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


def to_params(state: SharedSearch) -> dict[str, str]:
    """The URL parameters of ``state`` (unset fields are left out)."""
    params: dict[str, str] = {}
    for name, value in (("data", state.dataset), ("model", state.model), ("layer", state.layer),
                        ("grid", state.grid), ("q", state.query), ("u", state.upload), ("k", state.top_k)):
        if value is not None:
            params[name] = str(value)
    for name, flag in (("x", state.exclude_query), ("a", state.approximate)):
        if flag is not None:
            params[name] = "1" if flag else "0"
    nameable = [label for label in state.labels or () if "," not in label]
    if nameable:
        params["labels"] = ",".join(nameable)
    if state.region is not None and state.region.box is not None:
        params["box"] = ",".join(str(v) for v in state.region.box)
    elif state.region is not None and state.region.grid_mask is not None:
        params["mask"] = encode_mask(state.region.grid_mask)
    return params


def from_params(params: Mapping[str, str | list[str]]) -> tuple[SharedSearch, list[ShareError]]:
    """What a link asks for, and one error per parameter that could not be used."""
    values = {name: _last(value) for name, value in params.items()}
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
    for field_name, name in (("exclude_query", "x"), ("approximate", "a")):
        if name in values:
            if values[name] in ("0", "1"):
                fields[field_name] = values[name] == "1"
            else:
                problems.append(ShareError(f"{name}={values[name][:20]!r} must be 0 or 1."))
    take("labels", "labels", _labels)
    if "box" in values and "mask" in values:
        problems.append(ShareError("The link has both box= and mask=; it can hold only one region."))
    else:
        take("region", "box", _box)
        take("region", "mask", lambda v: Region(grid_mask=decode_mask(v)))
    if "region" in fields and "query" not in fields and "upload" not in fields:
        problems.append(ShareError("The link has a region but no usable query image (q= or u=); "
                                   "the region is ignored."))
        del fields["region"]
    return SharedSearch(**fields), problems  # type: ignore[arg-type]
