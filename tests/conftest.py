"""Shared fixtures: real photos that ship inside pip packages, the bundled model, tiny caches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.data import package_photo

pytest_plugins = ["tests.support.app_fixtures"]  # the dashboard fixtures, for the page and browser tests

APP_TESTS = Path(__file__).parent / "app"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the running dashboard (tests/app/) are marked ``app``: ``-m "not app"`` leaves the unit tests."""
    for item in items:
        if APP_TESTS in Path(item.fspath).parents:
            item.add_marker(pytest.mark.app)


@pytest.fixture(scope="session")
def lite0():
    from vfs.features.models import load_model

    return load_model("tf_efficientnet_lite0", device="cpu")


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A small labelled dataset of real photos: animals/, objects/, textures/, plus one at the root."""
    layout = {"animals": ["chelsea.png", "astronaut.png"], "objects": ["coffee.png", "rocket.jpg", "motorcycle_left.png"],
              "textures": ["brick.png", "grass.png", "gravel.png"], "": ["china.jpg"]}
    root = tmp_path / "photos"
    for folder, names in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(package_photo(name), root / folder / name)
    return root
