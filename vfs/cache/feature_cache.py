"""Feature caches: pooled grids of one layer over one dataset, as uncompressed Arrow IPC shards.

A cache is a folder ``<cache-dir>/<dataset>-<hash>/<model>--<layer>--g<G>--<key>/`` holding

* ``shard-NNNNN.arrow``: uncompressed Arrow IPC files, one record batch each, with columns
  ``path``, ``label``, ``width``, ``height``, ``file_size``, ``mtime_ns``,
  ``features`` (``arrow.fixed_shape_tensor`` float16 [C, G, G]) and ``cell_norms2``
  (float32 [G, G], the squared L2 norm over channels of every cell, precomputed for search);
  the schema metadata key ``vfs`` holds :class:`CacheSpec` as JSON;
* ``manifest.json``: the shards in order with their row count, byte size and CRC-32, plus the
  files each shard's run skipped (so an unchanged broken file is not retried, and a resumed run
  cuts shards exactly where an uninterrupted one would).

Every file is written to a temporary name and renamed into place, so a crash leaves either the
old or the new version. ``key`` hashes model, weights fingerprint, layer, preprocessing, grid and
the format version; any change to those gives a different cache.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from filelock import FileLock

from vfs.errors import CacheError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.arrow$")


@dataclass(frozen=True)
class CacheSpec:
    """What produced a cache's features."""

    model: str
    weights: str  # human-readable source
    fingerprint: str  # hash of the model's state dict
    layer: str
    preprocessing: dict[str, Any]
    grid: int
    channels: int
    untrained: bool = False
    format_version: int = FORMAT_VERSION

    def key(self) -> str:
        identity = {"model": self.model, "fingerprint": self.fingerprint, "layer": self.layer,
                    "preprocessing": self.preprocessing, "grid": self.grid, "format_version": self.format_version}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def model_label(self) -> str:
        return f"{self.model} (untrained)" if self.untrained else self.model

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> CacheSpec:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def dataset_folder_name(dataset_root: str | Path) -> str:
    """``<name>-<hash>`` of a local folder (resolved) or of a dataset URI such as ``s3://bucket/photos``."""
    if isinstance(dataset_root, str) and "://" in dataset_root:
        uri = dataset_root.rstrip("/")
        return f"{_slug(uri.rsplit('/', 1)[-1])}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"
    root = Path(dataset_root).expanduser().resolve()
    return f"{_slug(root.name)}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def cache_path(cache_dir: str | Path, dataset_root: str | Path, spec: CacheSpec) -> Path:
    name = f"{_slug(spec.model)}--{_slug(spec.layer)}--g{spec.grid}--{spec.key()}"
    return Path(cache_dir).expanduser() / dataset_folder_name(dataset_root) / name


def shard_schema(spec: CacheSpec) -> pa.Schema:
    return pa.schema([
        pa.field("path", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("file_size", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("features", pa.fixed_shape_tensor(pa.float16(), [spec.channels, spec.grid, spec.grid])),
        pa.field("cell_norms2", pa.fixed_shape_tensor(pa.float32(), [spec.grid, spec.grid])),
    ], metadata={"vfs": spec.to_json()})


@dataclass
class ShardRows:
    """Rows of one shard before they are written."""

    paths: list[str] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    file_sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # each (C, G, G) float16

    def __len__(self) -> int:
        return len(self.paths)

    def to_batch(self, spec: CacheSpec) -> pa.RecordBatch:
        schema = shard_schema(spec)
        shape = (len(self), spec.channels, spec.grid, spec.grid)
        feats = np.stack(self.features).astype(np.float16) if self.features else np.zeros(shape, np.float16)
        return pa.record_batch([
            _string_array(self.paths), _string_array(self.labels),
            _number_array(np.array(self.widths, np.int32)), _number_array(np.array(self.heights, np.int32)),
            _number_array(np.array(self.file_sizes, np.int64)), _number_array(np.array(self.mtimes, np.int64)),
            _tensor_array(schema.field("features").type, feats),
            _tensor_array(schema.field("cell_norms2").type, cell_norms2(feats)),
        ], schema=schema)


def cell_norms2(features: np.ndarray) -> np.ndarray:
    """Squared norm over channels of each cell of (N, C, G, G) float16 features, in float32."""
    f32 = features.astype(np.float32)
    return np.einsum("ncij,ncij->nij", f32, f32).astype(np.float32)


# Arrays are built from and read as raw buffers: pyarrow's own numpy conversions (pa.array,
# Array.to_numpy) import pandas on first use, a quarter of a second and 45 MB per process.

def _number_array(values: np.ndarray) -> pa.Array:
    """A 1-D numeric array without nulls over the bytes of ``values``."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _string_array(values: list[str | None]) -> pa.Array:
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    valid = np.array([v is not None for v in values], dtype=bool)
    nulls = len(values) - int(valid.sum())
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.string(), len(values), [validity, pa.py_buffer(offsets),
                                                            pa.py_buffer(b"".join(encoded))], null_count=nulls)


# the numeric Arrow types of the shard schema; pyarrow's own to_pandas_dtype imports pandas in recent versions
_NUMPY_TYPES = {arrow: np.dtype(numpy) for arrow, numpy in (
    (pa.float16(), np.float16), (pa.float32(), np.float32), (pa.float64(), np.float64), (pa.int8(), np.int8),
    (pa.int16(), np.int16), (pa.int32(), np.int32), (pa.int64(), np.int64), (pa.uint8(), np.uint8),
    (pa.uint16(), np.uint16), (pa.uint32(), np.uint32), (pa.uint64(), np.uint64))}


def _numbers(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The values of a numeric column without nulls, zero-copy for one chunk (read-only)."""
    chunks = [c for c in (column.chunks if isinstance(column, pa.ChunkedArray) else [column]) if len(c)]
    dtype = _NUMPY_TYPES[column.type]
    parts = [np.frombuffer(c.buffers()[1], dtype, count=len(c), offset=c.offset * dtype.itemsize) for c in chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, dtype)


def _tensor_array(tensor_type: pa.ExtensionType, values: np.ndarray) -> pa.ExtensionArray:
    flat = _number_array(values.reshape(-1))
    storage = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
    return pa.ExtensionArray.from_storage(tensor_type, storage)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(file)`` to a temporary file, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise CacheError(f"Disk full while writing {path}; the cache is unchanged. Free space and rerun.") from None
        raise


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass
class ShardRecord:
    file: str
    rows: int
    bytes: int
    crc32: int
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"path", "size", "mtime_ns", "reason"}


class ShardStore:
    """The writable side of one cache folder: validated shards plus the manifest."""

    def __init__(self, path: Path, spec: CacheSpec, shards: list[ShardRecord], problems: list[str]):
        self.path = path
        self.spec = spec
        self.shards = shards
        self.problems = problems  # what validation found and repaired, for the user

    @classmethod
    def open(cls, path: str | Path, spec: CacheSpec) -> ShardStore:
        """Open or create; corrupt, truncated or orphaned shards are reported and removed."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        shards: list[ShardRecord] = []
        manifest_path = path / MANIFEST
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
                if manifest.get("format_version") != FORMAT_VERSION or CacheSpec.from_json(
                        json.dumps(manifest["spec"])) != spec:
                    raise ValueError("made by a different model, layer or format")
                shards = [ShardRecord(**record) for record in manifest["shards"]]
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{manifest_path}: unreadable manifest ({exc}); rebuilding the cache")
                shards = []
        valid: list[ShardRecord] = []
        for record in shards:
            reason = _shard_problem(path / record.file, record, spec)
            if reason is None:
                valid.append(record)
            else:
                problems.append(f"{record.file}: {reason}; its images will be extracted again")
                (path / record.file).unlink(missing_ok=True)
        keep = {record.file for record in valid}
        for stray in path.iterdir():
            if stray.name.startswith(".") and ".tmp-" in stray.name or (
                    SHARD_PATTERN.match(stray.name) and stray.name not in keep):
                stray.unlink(missing_ok=True)  # an interrupted write: not in the manifest, so never complete
        store = cls(path, spec, valid, problems)
        if valid != shards or not manifest_path.exists():
            store._write_manifest()
        return store

    def known(self) -> dict[str, tuple[int, int]]:
        """Every path the cache accounts for (as a row or as skipped) -> (file_size, mtime_ns)."""
        known: dict[str, tuple[int, int]] = {}
        for record in self.shards:
            table = _read_table(self.path / record.file, columns=["path", "file_size", "mtime_ns"])
            for p, s, m in zip(*(table.column(c).to_pylist() for c in ("path", "file_size", "mtime_ns"))):
                known[p] = (s, m)
            for item in record.skipped:
                known[item["path"]] = (item["size"], item["mtime_ns"])
        return known

    def skipped(self) -> list[dict[str, Any]]:
        return [item for record in self.shards for item in record.skipped]

    def next_shard_name(self) -> str:
        numbers = [int(m.group(1)) for r in self.shards if (m := SHARD_PATTERN.match(r.file))]
        return f"shard-{max(numbers, default=-1) + 1:05d}.arrow"

    def append(self, rows: ShardRows, skipped: list[dict[str, Any]]) -> None:
        table = pa.Table.from_batches([rows.to_batch(self.spec)])
        self.shards.append(self._write_shard(self.next_shard_name(), table, skipped))
        self._write_manifest()

    def remove(self, paths: set[str]) -> int:
        """Drop rows and skipped entries for ``paths``, rewriting only the shards that hold them."""
        removed = 0
        updated: list[ShardRecord] = []
        for record in self.shards:
            shard_file = self.path / record.file
            table = _read_table(shard_file)
            keep_mask = np.array([p not in paths for p in table.column("path").to_pylist()], dtype=bool)
            skipped = [s for s in record.skipped if s["path"] not in paths]
            removed += int((~keep_mask).sum()) + len(record.skipped) - len(skipped)
            if keep_mask.all() and len(skipped) == len(record.skipped):
                updated.append(record)
                continue
            if not keep_mask.any() and not skipped:
                shard_file.unlink(missing_ok=True)
                continue
            updated.append(self._write_shard(record.file, table.filter(pa.array(keep_mask)).combine_chunks(), skipped))
        self.shards = updated
        self._write_manifest()
        return removed

    def _write_shard(self, name: str, table: pa.Table, skipped: list[dict[str, Any]]) -> ShardRecord:
        target = self.path / name

        def write(handle: Any) -> None:
            with ipc.new_file(handle, table.schema) as writer:  # uncompressed: read back zero-copy
                writer.write_table(table)

        _atomic_write(target, write)
        return ShardRecord(name, table.num_rows, target.stat().st_size, _crc32(target), skipped)

    def _write_manifest(self) -> None:
        manifest = {"format_version": FORMAT_VERSION, "spec": json.loads(self.spec.to_json()),
                    "shards": [dataclasses.asdict(r) for r in self.shards]}
        text = json.dumps(manifest, indent=1, sort_keys=True).encode()
        _atomic_write(self.path / MANIFEST, lambda handle: handle.write(text))


def _read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        table = ipc.open_file(source).read_all()
    return table.select(columns) if columns else table


def _shard_problem(path: Path, record: ShardRecord, spec: CacheSpec, verify_crc: bool = True) -> str | None:
    """Why a shard cannot be trusted, or None."""
    if not path.exists():
        return "missing"
    size = path.stat().st_size
    if size != record.bytes:
        return f"truncated or resized ({size} bytes, expected {record.bytes})"
    if verify_crc and _crc32(path) != record.crc32:
        return "checksum mismatch (corrupt)"
    try:
        with pa.memory_map(str(path)) as source:
            reader = ipc.open_file(source)
            if reader.schema.metadata is None or CacheSpec.from_json(reader.schema.metadata[b"vfs"]) != spec:
                return "made by a different model, layer or format"
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (pa.ArrowInvalid, OSError, KeyError, ValueError) as exc:
        return f"unreadable ({exc})"
    if rows != record.rows:
        return f"{rows} rows, expected {record.rows}"
    return None


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on a cache folder: a second indexer waits for the first."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with FileLock(path / ".lock"):  # flock on POSIX, LockFileEx on Windows
        yield


@dataclass
class _MappedShard:
    offset: int
    features: np.ndarray  # (n, C, G, G) float16, a view into the memory map
    cell_norms2: np.ndarray  # (n, G, G) float32, a view into the memory map
    _keepalive: Any = field(repr=False)


def _zero_copy(column: pa.ChunkedArray, shape: tuple[int, ...]) -> np.ndarray:
    (chunk,) = column.chunks
    return _numbers(chunk.storage.flatten()).reshape((len(chunk), *shape))


def map_shard(path: Path, spec: CacheSpec, offset: int = 0) -> tuple[_MappedShard, pa.Table]:
    """Memory-map one non-empty shard file: its zero-copy feature views and its table."""
    source = pa.memory_map(str(path))
    table = ipc.open_file(source).read_all()
    shape = (spec.channels, spec.grid, spec.grid)
    return _MappedShard(offset, _zero_copy(table.column("features"), shape),
                        _zero_copy(table.column("cell_norms2"), shape[1:]), (source, table)), table


class FeatureCache:
    """A finished cache, memory-mapped read-only; features are zero-copy views into the files."""

    def __init__(self, path: Path, spec: CacheSpec, dataset_root: Path | None, shards: list[_MappedShard],
                 paths: list[str], labels: list[str | None], image_sizes: np.ndarray, nbytes: int):
        self.path = path
        self.spec = spec
        self.dataset_root = dataset_root
        self.shards = shards
        self.paths = paths
        self.labels = labels
        self.image_sizes = image_sizes  # (N, 2) int: original width, height
        self.nbytes = nbytes
        self._index = {p: i for i, p in enumerate(paths)}

    @classmethod
    def open(cls, path: str | Path, dataset_root: str | Path | None = None, verify: bool = False) -> FeatureCache:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise CacheError(f"No feature cache at {path}; run `vfs index` first.")
        try:
            manifest = json.loads(manifest_path.read_text())
            spec = CacheSpec.from_json(json.dumps(manifest["spec"]))
            records = [ShardRecord(**r) for r in manifest["shards"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheError(f"{manifest_path} is unreadable ({exc}); rerun `vfs index` to rebuild it.") from None
        shards: list[_MappedShard] = []
        paths: list[str] = []
        labels: list[str | None] = []
        sizes: list[np.ndarray] = []
        nbytes = 0
        for record in records:
            shard_path = path / record.file
            problem = _shard_problem(shard_path, record, spec, verify_crc=verify)
            if problem is not None:
                raise CacheError(f"{shard_path}: {problem}; rerun `vfs index` to rebuild it.")
            if record.rows == 0:
                continue
            shard, table = map_shard(shard_path, spec, offset=len(paths))
            shards.append(shard)
            paths.extend(table.column("path").to_pylist())
            labels.extend(table.column("label").to_pylist())
            sizes.append(np.stack([_numbers(table.column("width")), _numbers(table.column("height"))], axis=1))
            nbytes += record.bytes
        image_sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2), np.int64)
        root = Path(dataset_root) if dataset_root is not None else None
        return cls(path, spec, root, shards, paths, labels, image_sizes, nbytes)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def grid(self) -> int:
        return self.spec.grid

    @property
    def channels(self) -> int:
        return self.spec.channels

    def index_of(self, path: str) -> int | None:
        return self._index.get(path)

    def features(self, index: int) -> np.ndarray:
        """(C, G, G) float16 features of image ``index``."""
        for shard in reversed(self.shards):
            if index >= shard.offset:
                return shard.features[index - shard.offset]
        raise IndexError(index)

    def has_labels(self) -> bool:
        return any(label is not None for label in self.labels)

    def take(self, rows: np.ndarray) -> FeatureCache:
        """A cache of just ``rows`` (ascending), copied into memory as one shard; row i is ``rows[i]``."""
        rows = np.asarray(rows, dtype=np.int64)
        shape = (len(rows), self.channels, self.grid, self.grid)
        features, norms = np.empty(shape, np.float16), np.empty(shape[:1] + shape[2:], np.float32)
        starts = np.array([shard.offset for shard in self.shards], dtype=np.int64)
        owner = np.searchsorted(starts, rows, side="right") - 1
        for s in np.unique(owner):
            picked = np.flatnonzero(owner == s)
            local = rows[picked] - self.shards[s].offset
            features[picked] = self.shards[s].features[local]
            norms[picked] = self.shards[s].cell_norms2[local]
        shards = [_MappedShard(0, features, norms, None)] if len(rows) else []
        return FeatureCache(self.path, self.spec, self.dataset_root, shards, [self.paths[i] for i in rows],
                            [self.labels[i] for i in rows], self.image_sizes[rows], features.nbytes + norms.nbytes)
