"""The widget's tests share one small indexed dataset: six photos in three labelled folders."""

import shutil

import pytest

from tests.support.data import package_photo
from vfs.feature_search import FeatureSearch


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, lite0) -> FeatureSearch:
    root = tmp_path_factory.mktemp("widget") / "photos"
    for folder, names in {"animals": ["chelsea.png", "astronaut.png"], "things": ["coffee.png", "rocket.jpg"],
                          "textures": ["brick.png", "grass.png"]}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(package_photo(name), root / folder / name)
    fs = FeatureSearch(root, model=lite0, cache_dir=root.parent / "cache")
    fs.index()
    return fs
