"""The feature caches on disk: what each one holds, how big it is, and deleting one.

Caches live at ``<cache-dir>/<dataset>-<hash>/<model>--<layer>--g<G>--<key>/`` (see
:mod:`vfs.cache.feature_cache`). The dataset folder's full path is not stored in a cache; it is recognised
from the dataset folders the caller knows about, and otherwise shown by its cache folder name.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vfs.cache.feature_cache import MANIFEST, CacheSpec, dataset_folder_name
from vfs.errors import CacheError


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    spec: CacheSpec
    dataset: str  # the dataset folder when known, else its cache folder name
    images: int
    skipped: int
    bytes: int
    created: datetime  # when the oldest file in the cache was last written

    @property
    def model(self) -> str:
        return self.spec.model_label

    @property
    def layer(self) -> str:
        return self.spec.layer

    @property
    def grid(self) -> int:
        return self.spec.grid

    def describe(self) -> str:
        return (f"{self.model} · {self.layer} · grid {self.grid}×{self.grid} · {self.dataset} · "
                f"{self.images:,} images · {format_bytes(self.bytes)}")


def format_bytes(count: int) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    exponent = min(int(math.log(max(count, 1), 1024)), len(units) - 1)
    return f"{count} B" if exponent == 0 else f"{count / 1024**exponent:.1f} {units[exponent]}"


def manifest_token(path: str | Path) -> int | None:
    """Changes whenever a cache is written to (its manifest's mtime); None when there is no cache."""
    try:
        return (Path(path) / MANIFEST).stat().st_mtime_ns
    except OSError:
        return None


def read_cache(path: str | Path, datasets: dict[str, str] | None = None) -> CacheInfo | None:
    """What the cache at ``path`` holds, or None when there is none (``datasets``: folder name -> path)."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        spec = CacheSpec.from_json(json.dumps(manifest["spec"]))
        shards = manifest["shards"]
        images = sum(int(s["rows"]) for s in shards)
        skipped = sum(len(s.get("skipped", [])) for s in shards)
        files = [f for f in path.iterdir() if f.is_file()]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a cache, or being replaced right now
    stats = [f.stat() for f in files]
    return CacheInfo(path=path, spec=spec, dataset=(datasets or {}).get(path.parent.name, path.parent.name),
                     images=images, skipped=skipped, bytes=sum(s.st_size for s in stats),
                     created=datetime.fromtimestamp(min(s.st_mtime for s in stats)))


def list_caches(cache_dir: str | Path, known_datasets: Iterable[str | Path] = ()) -> list[CacheInfo]:
    """Every readable cache under ``cache_dir``, by dataset then model, layer and grid."""
    root = Path(cache_dir).expanduser()
    datasets = {dataset_folder_name(folder): str(folder) for folder in known_datasets}
    found = []
    for manifest in sorted(root.glob(f"*/*/{MANIFEST}")):
        info = read_cache(manifest.parent, datasets)
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda c: (c.dataset, c.spec.model, c.spec.layer, c.spec.grid))


def delete_cache(cache_dir: str | Path, path: str | Path) -> None:
    """Remove one cache folder (and its dataset folder once empty)."""
    root = Path(cache_dir).expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if target.parent.parent != root or not (target / MANIFEST).is_file():
        raise CacheError(f"{target} is not a feature cache in {root}; nothing was deleted.")
    shutil.rmtree(target)
    with contextlib.suppress(OSError):  # other caches of the same dataset remain
        target.parent.rmdir()
