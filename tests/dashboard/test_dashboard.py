"""The dashboard's logic without Streamlit: configuration, selection, queries, uploads, search."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vfs.cache.indexing import Progress
from vfs.dashboard.canvas import canvas_size
from vfs.dashboard.config import is_writable, parse_app_args
from vfs.dashboard.demo import DEMO_DIR
from vfs.dashboard.links import SharedSearch
from vfs.dashboard.query_images import QueryImage, filter_paths, link_query, load_upload, page_of
from vfs.dashboard.searching import run_search, window_heatmap
from vfs.dashboard.selection import (
    CacheState,
    Selection,
    describe_progress,
    display_path,
    link_layer,
    max_grid,
    resolve_dataset,
)
from vfs.errors import DatasetError, ImageError
from vfs.similarity.region import Region


@pytest.fixture(scope="module")
def model(lite0):
    return lite0  # the default model


def test_arguments_after_the_double_dash_and_environment_fallbacks(tmp_path):
    config = parse_app_args(["--data", str(tmp_path), "--cache-dir", str(tmp_path / "c")], {})
    assert config.data == tmp_path and config.cache_dir == tmp_path / "c" and not config.read_only
    assert parse_app_args([], {}).default_dataset == DEMO_DIR
    from_env = parse_app_args([], {"VFS_DATA": "photos", "VFS_CACHE_DIR": str(tmp_path), "VFS_READ_ONLY": "yes"})
    assert from_env.data == Path("photos") and from_env.cache_dir == tmp_path and from_env.read_only
    # a test runner's own arguments are not the app's
    assert parse_app_args(["-q", "tests/test_app.py", "--d", "x"], {}).data is None


def test_unwritable_cache_folder_means_read_only(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # permission bits do not stop root, so the permission check itself is stood in for
    monkeypatch.setattr("vfs.dashboard.config.os.access", lambda path, mode: Path(path) != locked)
    assert not is_writable(locked / "cache" / "deeper")  # the nearest existing folder decides
    assert parse_app_args(["--cache-dir", str(locked / "cache")], {}).read_only
    assert is_writable(tmp_path / "not" / "yet" / "made")


def test_dataset_folders_are_resolved_with_clear_errors(tmp_path):
    assert resolve_dataset(f"  {tmp_path}  ") == tmp_path.resolve()
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_dataset(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        resolve_dataset(tmp_path / "file.jpg")
    with pytest.raises(DatasetError, match="Give a dataset folder"):
        resolve_dataset("   ")


def test_display_path_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "demo").mkdir(parents=True)
    assert display_path(tmp_path / "data" / "demo") == "data/demo"
    assert display_path(tmp_path) == "."
    assert display_path(Path("/")) == "/"


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_are_checked_for_format_size_and_pixels():
    query = load_upload("ok.png", _png((40, 30)))
    assert query.name == "ok.png" and query.dataset_path is None and query.key.startswith("upload:")
    assert query.picture(Path(".")).size == (40, 30)
    with pytest.raises(ImageError, match=r"^broken.jpg: not a recognised image format$"):
        load_upload("broken.jpg", b"garbage")
    with pytest.raises(ImageError, match=r"big\.png is 2\.1 MB; uploads are limited to 1 MB"):  # 2 MiB, in MB
        load_upload("big.png", bytes(2 * 1024 * 1024), max_mb=1)
    with pytest.raises(ImageError, match="exceeds the limit of 1,000"):
        load_upload("wide.png", _png((100, 100)), max_pixels=1000)


def test_filtering_and_paging_of_image_names():
    paths = [f"{label}/img{i:02d}.jpg" for label in ("cat", "dog") for i in range(10)]
    assert filter_paths(paths, "DOG img0") == [f"dog/img0{i}.jpg" for i in range(10)]
    assert filter_paths(paths, "") == paths
    assert page_of(paths, 2, 12) == (paths[12:], 2)
    assert page_of(paths, 9, 12) == (paths[12:], 2)  # clamped to the last page
    assert page_of([], 1, 12) == ([], 1)


def test_canvas_keeps_the_aspect_ratio():
    assert canvas_size((1000, 500), 480, 480) == (480, 240)
    assert canvas_size((300, 600), 480, 480) == (240, 480)
    assert canvas_size((100, 100), 480, 480) == (480, 480)


def test_link_layer_and_grid_are_checked_against_the_model(model):
    assert link_layer(SharedSearch(), model) == (None, None, [])
    layer, grid, problems = link_layer(SharedSearch(layer="blocks.4", grid=10), model)
    assert layer.name == "blocks.4" and grid == 10 and problems == [] and max_grid(layer) == 14
    layer, grid, problems = link_layer(SharedSearch(layer="blocks.6", grid=9), model)
    assert layer.name == "blocks.6" and grid is None and "at most 7" in str(problems[0])
    layer, grid, problems = link_layer(SharedSearch(layer="head"), model)
    assert layer is None and "not a layer of tf_efficientnet_lite0" in str(problems[0])


def test_link_query_must_be_in_the_dataset(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "b.jpg")  # a link's query image is decoded before it is used
    assert link_query(SharedSearch(query="a/b.jpg"), ["a/b.jpg"], tmp_path) == (QueryImage.from_dataset("a/b.jpg"), [])
    query, problems = link_query(SharedSearch(query="a/c.jpg"), ["a/b.jpg"], tmp_path)
    assert query is None and "renamed or removed" in str(problems[0])


def test_selection_builds_and_reports_its_cache(constructed_case, model, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(constructed_case.data / "photos", data)
    selection = Selection(data, model, model.layer("blocks.6"), 3, tmp_path / "cache")
    assert selection.cache_state(9) == (CacheState.MISSING, 0)
    progress: list[Progress] = []
    summary = selection.build(progress.append, threading.Event())
    assert summary.images == 9 and progress[-1].done == progress[-1].total == 9
    assert selection.cache_state(9) == (CacheState.READY, 9)
    assert selection.cache_state(10) == (CacheState.OUT_OF_DATE, 9)
    assert "blocks.6 · grid 3×3" in selection.describe()
    assert len(selection.feature_search().cache) == 9


def test_search_and_heatmap_agree_on_the_best_window(constructed_case, model):
    selection = Selection(constructed_case.data, model, model.default_layer, 7, constructed_case.cache_dir)
    search = selection.feature_search()
    query = QueryImage.from_dataset(constructed_case.query)
    region = Region(box=constructed_case.patch_box)
    outcome = run_search(search, constructed_case.data, query, region, top_k=3, exclude_query=True)
    best = outcome.result.matches[0]
    assert best.path == constructed_case.target and outcome.seconds >= outcome.result.seconds
    scores = window_heatmap(search, constructed_case.data, query, region, best.index)
    assert scores.shape == (5, 5)  # a 3×3 window on a 7×7 grid
    assert np.unravel_index(scores.argmax(), scores.shape) == best.window[:2]
    assert scores.max() == pytest.approx(best.score, abs=1e-5)


def test_progress_text():
    assert describe_progress(None) == "starting…"
    assert describe_progress(Progress(50, 200, 5.0)) == "50/200 images (25%) · 10.0 img/s · ETA 00:15"
