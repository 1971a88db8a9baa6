"""Data the tests make or borrow: real photos that ship inside pip packages, tiny synthetic caches."""


from __future__ import annotations

from pathlib import Path

import numpy as np

from vfs.cache.feature_cache import CacheSpec, FeatureCache, ShardRows, ShardStore

SKIMAGE_PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "brick.png",
                  "grass.png", "gravel.png", "hubble_deep_field.jpg", "camera.png", "retina.jpg", "coins.png"]


def package_photo(name: str) -> Path:
    if name in ("china.jpg", "flower.jpg"):
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / name
    import skimage.data

    return Path(skimage.data.__file__).parent / name


def make_spec(channels: int, grid: int) -> CacheSpec:
    return CacheSpec(model="synthetic", weights="random", fingerprint="0", layer="x",
                     preprocessing={"resize": "full-image"}, grid=grid, channels=channels)


def write_cache(path: Path, features: np.ndarray, shard_rows: int = 7, sizes: tuple[int, int] = (224, 224),
                labels: list[str | None] | None = None, paths: list[str] | None = None) -> FeatureCache:
    """A cache of given (N, C, G, G) features, split into shards of ``shard_rows``."""
    n, c, g, _ = features.shape
    store = ShardStore.open(path, make_spec(c, g))
    for start in range(0, n, shard_rows):
        rows = ShardRows()
        for i in range(start, min(n, start + shard_rows)):
            rows.paths.append(paths[i] if paths else f"img{i:05d}.png")
            rows.labels.append(labels[i] if labels else None)
            rows.widths.append(sizes[0])
            rows.heights.append(sizes[1])
            rows.file_sizes.append(1)
            rows.mtimes.append(1)
            rows.features.append(features[i].astype(np.float16))
        store.append(rows, [])
    return FeatureCache.open(path)
