"""Shared fixtures: real photos that ship inside pip packages, the bundled model, tiny caches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.data import package_photo

pytest_plugins = ["tests.support.app_fixtures"]  # the dashboard fixtures, for the page and browser tests

APP_TESTS = Path(__file__).parent / "app"
#: Fixtures that are PyTorch or load a model (timm on PyTorch): a test that uses one, directly or through another
#: fixture, needs torch.
TORCH_FIXTURES = frozenset({"torch", "lite0", "constructed_case"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the running dashboard (tests/app/) are marked ``app``: ``-m "not app"`` leaves the unit tests.
    Tests that use a fixture of TORCH_FIXTURES are marked ``torch``, as are, by hand, those that run PyTorch otherwise:
    ``-m "not torch"`` leaves the tests that the small environments of other Pythons run (make unit-other-pythons)."""
    for item in items:
        if APP_TESTS in Path(item.fspath).parents:
            item.add_marker(pytest.mark.app)
        if TORCH_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.torch)


@pytest.fixture(scope="session")
def torch():
    """PyTorch, for the tests that use it directly: a test module that imported it at its top could not be
    collected where torch is not installed, and its tests that need no torch would not run there."""
    import torch

    return torch


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
