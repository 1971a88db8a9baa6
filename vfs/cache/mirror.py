"""Feature caches kept on object storage: any ``pyarrow.fs`` URI (``s3://``, ``gs://``, ``hdfs://``, ``file://``).

Shards are written with fsync, atomic renames and a file lock, and searched through memory maps;
object stores offer none of these. A cache directory given as a URI is therefore *mirrored*: the
cache is built and searched in a local folder, and copied up (:func:`push_cache`) and down
(:func:`pull_cache`) whole, one cache folder (``<dataset>/<model--layer--grid--key>``) at a time.

Both directions keep the rule that makes local caches safe: the manifest is the last thing
written and names every shard with its size and CRC-32. A push first deletes the remote
manifest, so while it runs (or after it is interrupted) readers find no cache rather than a
mixed one; a pull checks every shard's CRC-32 as it arrives and writes the local manifest last.
Shards whose name, size and CRC-32 already match on the other side are not copied again.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import pyarrow.fs as pafs

from vfs.cache.feature_cache import MANIFEST, locked
from vfs.errors import CacheError

_CHUNK = 1 << 22
#: Local mirrors of URI cache directories, one folder per URI.
DEFAULT_MIRROR_ROOT = Path("~/.cache/vfs/mirrors")


def is_remote(cache_dir: str | Path) -> bool:
    return isinstance(cache_dir, str) and "://" in cache_dir


def mirror_folder(uri: str, mirror_root: str | Path = DEFAULT_MIRROR_ROOT) -> Path:
    """The local folder that mirrors the cache directory ``uri``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1] or "caches"
    return Path(mirror_root).expanduser() / f"{name}-{hashlib.sha256(uri.rstrip('/').encode()).hexdigest()[:12]}"


def _remote(uri: str, relative: str) -> tuple[pafs.FileSystem, str]:
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri.rstrip("/"))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise CacheError(f"Cannot open the cache directory {uri}: {exc}") from None
    return filesystem, f"{root.rstrip('/')}/{relative}"


def _read_remote(filesystem: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def _records(manifest: bytes | None) -> dict[str, tuple[int, int]] | None:
    """Shard file -> (bytes, crc32) of a manifest; None if there is none or it is unreadable."""
    if manifest is None:
        return None
    try:
        return {record["file"]: (record["bytes"], record["crc32"]) for record in json.loads(manifest)["shards"]}
    except (ValueError, KeyError, TypeError):
        return None


def push_cache(local: Path, uri: str, relative: str) -> int:
    """Copy the finished cache in ``local`` to ``uri``/``relative``; returns the shards copied."""
    filesystem, remote = _remote(uri, relative)
    with locked(local):  # a consistent snapshot: no indexer rewrites it meanwhile
        manifest = (local / MANIFEST).read_bytes() if (local / MANIFEST).exists() else None
        if manifest is None:
            raise CacheError(f"{local} holds no finished cache to copy.")
        wanted = _records(manifest) or {}
        already = _records(_read_remote(filesystem, f"{remote}/{MANIFEST}")) or {}
        filesystem.create_dir(remote, recursive=True)
        try:
            filesystem.delete_file(f"{remote}/{MANIFEST}")  # readers see no cache until the push is complete
        except FileNotFoundError:
            pass
        copied = 0
        for name, record in wanted.items():
            if already.get(name) == record:
                continue
            with open(local / name, "rb") as source, filesystem.open_output_stream(f"{remote}/{name}") as target:
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
            copied += 1
        with filesystem.open_output_stream(f"{remote}/{MANIFEST}") as target:
            target.write(manifest)
    return copied


def pull_cache(uri: str, relative: str, local: Path) -> int | None:
    """Bring ``local`` up to date with the cache at ``uri``/``relative``.

    Returns the shards copied, or None when there is no cache there (or a push is under way).
    """
    filesystem, remote = _remote(uri, relative)
    manifest = _read_remote(filesystem, f"{remote}/{MANIFEST}")
    if manifest is None:
        return None
    local_manifest = local / MANIFEST
    if local_manifest.exists() and local_manifest.read_bytes() == manifest:
        return 0
    wanted = _records(manifest)
    if wanted is None:
        raise CacheError(f"The manifest of {uri}/{relative} is unreadable; push the cache again.")
    with locked(local):
        have = _records(local_manifest.read_bytes() if local_manifest.exists() else None) or {}
        local_manifest.unlink(missing_ok=True)  # until the new one is written, the folder holds no cache
        copied = 0
        for name, (size, crc) in wanted.items():
            if have.get(name) == (size, crc) and (local / name).is_file():
                continue
            _download(filesystem, f"{remote}/{name}", local / name, size, crc, f"{uri}/{relative}/{name}")
            copied += 1
        for stray in set(have) - set(wanted):
            (local / stray).unlink(missing_ok=True)
        temporary = local / f".{MANIFEST}.tmp-{os.getpid()}"
        temporary.write_bytes(manifest)
        os.replace(temporary, local_manifest)
    return copied


def _download(filesystem: pafs.FileSystem, source: str, target: Path, size: int, crc: int, name: str) -> None:
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    checksum, length = 0, 0
    try:
        with filesystem.open_input_stream(source) as stream, open(temporary, "wb") as out:
            while chunk := stream.read(_CHUNK):
                checksum, length = zlib.crc32(chunk, checksum), length + len(chunk)
                out.write(chunk)
        if (length, checksum) != (size, crc):
            raise CacheError(f"{name} does not match its manifest (size or CRC-32): the copy on storage is damaged; "
                             "push the cache again.")
        os.replace(temporary, target)
    except FileNotFoundError:
        raise CacheError(f"{name} is missing on storage; push the cache again.") from None
    finally:
        temporary.unlink(missing_ok=True)
