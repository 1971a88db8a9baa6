"""Fixtures for the dashboard tests; load them with ``pytest_plugins = ["app_fixtures"]``."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.app_cases import ConstructedCase, make_constructed_dataset, make_hostile_dataset
from vfs.cache.indexing import build_index
from vfs.features.models import load_model

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture(scope="session")
def constructed_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConstructedCase]:
    """The dataset with its default-layer cache (tf_efficientnet_lite0, blocks.6, 7×7) built; shared by the
    session, so read-only: a test that builds or deletes caches takes ``private_case``."""
    root = tmp_path_factory.mktemp("constructed")
    case = ConstructedCase(root / "data", root / "cache")
    make_constructed_dataset(case.data)
    model = load_model()
    build_index(case.data, model, model.default_layer, cache_dir=case.cache_dir)
    caches = sorted(p.name for p in case.cache_dir.glob("*/*--g*--*"))
    yield case
    added = sorted({p.name for p in case.cache_dir.glob("*/*--g*--*")} - set(caches))
    assert not added, f"tests built caches in the shared case (use private_case): {added}"


@pytest.fixture
def private_case(constructed_case: ConstructedCase, tmp_path: Path) -> ConstructedCase:
    """The constructed case with a cache folder of its own, for tests that build or delete caches."""
    cache_dir = tmp_path / "cache"
    shutil.copytree(constructed_case.cache_dir, cache_dir)
    return ConstructedCase(constructed_case.data, cache_dir)


@pytest.fixture
def hostile_case(constructed_case: ConstructedCase, tmp_path: Path) -> ConstructedCase:
    """The constructed dataset (and its cache), its query folder named like a link and its photos like markup."""
    query, target = make_hostile_dataset(constructed_case.data, tmp_path / "data")
    model = load_model()
    build_index(tmp_path / "data", model, model.default_layer, cache_dir=tmp_path / "cache")
    return ConstructedCase(tmp_path / "data", tmp_path / "cache", query=query, target=target)


@pytest.fixture
def dashboard(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., object]]:
    """``dashboard(case, **env)`` -> an AppTest of app.py on ``case`` (environment set for its runs).

    A deployment test passes ``VFS_CONFIG=...`` and no case, so that the file alone decides.
    """
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    # as a deployment's server must be started: no larger uploads than any deployment allows (see app_config)
    served_limit = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)

    def make(case: ConstructedCase | None = None, query_params: dict[str, str] | None = None,
             **environment: str) -> AppTest:
        for name in ("VFS_CONFIG", "VFS_DATA", "VFS_CACHE_DIR", "VFS_READ_ONLY"):
            monkeypatch.delenv(name, raising=False)
        if case is not None:
            monkeypatch.setenv("VFS_DATA", str(case.data))
            monkeypatch.setenv("VFS_CACHE_DIR", str(case.cache_dir))
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        app = AppTest.from_file(str(APP), default_timeout=120)
        app.query_params.update(query_params or {})
        return app

    yield make
    config.set_option("server.maxUploadSize", served_limit)
