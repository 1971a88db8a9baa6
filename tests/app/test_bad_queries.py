"""Every awkward file of the issue's corpus used as the query image: on the command line, as an
upload (``load_upload`` and the dashboard's uploader), and as a dataset image named by a link or
picked in the dashboard. Decodable ones search; the rest give one clear line, never a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app_pages.shared.common import PICKER_KEY
from tests.support.app_cases import ConstructedCase, canvas_rect, draw, shown
from tests.support.bad_files import PATH_ONLY, make_bad_query_files, unreadable
from tests.support.data import package_photo
from vfs.cache.indexing import build_index
from vfs.cli import main
from vfs.dashboard.canvas import canvas_size
from vfs.dashboard.query_images import QueryImage, load_upload
from vfs.errors import ImageError
from vfs.features.images import load_image

UPLOAD_LIMIT = "exceeds the limit of 40,000,000"  # an upload's pixel limit is lower than a dataset's


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("corpus") / "files"
    expected = make_bad_query_files(root)
    yield root, expected
    (root / "locked.jpg").chmod(0o644)  # so that the temporary folder can be removed


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory, lite0) -> tuple[Path, Path]:
    """Three photos and their cache, so that each command-line search only reads its query."""
    root = tmp_path_factory.mktemp("small")
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        (root / "data").mkdir(exist_ok=True)
        shutil.copy(package_photo(name), root / "data" / name)
    build_index(root / "data", lite0, lite0.default_layer, cache_dir=root / "cache")
    return root / "data", root / "cache"


def test_each_file_as_a_command_line_query(corpus, small_index, capsys, monkeypatch, lite0):
    root, expected = corpus
    data, cache = small_index
    monkeypatch.setattr("vfs.feature_search.load_model", lambda *args, **kwargs: lite0)  # the same model, loaded once
    for name, outcome in sorted(expected.items()):
        with unreadable(root / "locked.jpg", monkeypatch):
            code = main(["search", str(data), "--cache-dir", str(cache), "--query", str(root / name),
                         "--box", "0,0,1,1", "--top-k", "2", "--json"])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, name
        if outcome == "ok":
            assert code == 0 and len(json.loads(out)["results"]) == 2, (name, err)
        else:
            assert code == 2 and out == "", (name, out)
            (line,) = err.splitlines()
            assert line.startswith("vfs: error: ") and str(root / name) in line and outcome in line, (name, line)


def test_a_symlink_loop_query_is_one_line_from_the_installed_command(corpus, small_index):
    root, _ = corpus
    data, cache = small_index
    done = subprocess.run([sys.executable, "-m", "vfs.cli", "search", str(data), "--cache-dir", str(cache),
                           "--query", str(root / "loop.jpg"), "--box", "0,0,5,5", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"vfs: error: {root / 'loop.jpg'}: cannot decode (OSError: [Errno 40] Too "
                                        f"many levels of symbolic links: '{root / 'loop.jpg'}')"]


def _upload_outcome(outcome: str) -> str:
    return UPLOAD_LIMIT if outcome == "exceeds the limit" else outcome


def test_each_file_as_an_upload(corpus):
    root, expected = corpus
    for name, outcome in sorted(expected.items()):
        if name in PATH_ONLY:
            continue
        data = (root / name).read_bytes()
        if outcome == "ok":
            query = load_upload(name, data)
            assert isinstance(query, QueryImage) and query.name == name and query.dataset_path is None
            assert query.picture(root).size == load_image(root / name).size
        else:
            with pytest.raises(ImageError) as error:
                load_upload(name, data)
            message = str(error.value)
            assert message.startswith(f"{name}: ") and _upload_outcome(outcome) in message and "\n" not in message


def gallery_captions(app) -> list[str]:
    return [caption for image in app.image for caption in map(shown, image.captions) if caption[:1].isdigit()]


def test_each_file_uploaded_in_the_dashboard(dashboard, constructed_case, corpus):
    root, expected = corpus
    app = dashboard(constructed_case)
    app.session_state[PICKER_KEY] = True  # the uploader is in the query picker, drawn while it is open
    app.run()
    for name, outcome in sorted(expected.items()):
        if name in PATH_ONLY:
            continue
        app.file_uploader(key="upload").set_value((name, (root / name).read_bytes(), "application/octet-stream"))
        app.run()
        assert not app.exception, (name, app.exception)
        if outcome != "ok":
            assert f"{name}: " in shown(app.error[0].value) and _upload_outcome(outcome) in shown(app.error[0].value), name
            continue
        assert not app.error and app.session_state["query"].name == name
        width, height = canvas_size(load_image(root / name).size, 480, 480)
        draw(app, canvas_rect((0, 0, width, height), image_side=480))  # the whole picture
        app.run()
        assert not app.exception and not app.error, (name, app.exception, app.error)
        assert app.session_state["last_search"].outcome.query.name == name and gallery_captions(app), name


@pytest.fixture(scope="module")
def corpus_dataset(tmp_path_factory: pytest.TempPathFactory, corpus, lite0) -> ConstructedCase:
    """The corpus as a dataset (its broken files are skipped and reported by the index)."""
    root, _ = corpus
    folder = tmp_path_factory.mktemp("corpus-data")
    shutil.copytree(root, folder / "data", symlinks=True)
    (folder / "data" / "locked.jpg").chmod(0)
    summary = build_index(folder / "data", lite0, lite0.default_layer, cache_dir=folder / "cache")
    assert {s.path for s in summary.skipped} >= {"bomb.png", "empty.jpg", "text.jpg", "truncated.jpg"}
    yield ConstructedCase(folder / "data", folder / "cache", query="animated.gif")
    (folder / "data" / "locked.jpg").chmod(0o644)


def test_each_dataset_file_named_by_a_link(dashboard, corpus_dataset, corpus, monkeypatch):
    _, expected = corpus
    for name, outcome in sorted(expected.items()):
        with unreadable(corpus_dataset.data / "locked.jpg", monkeypatch):
            app = dashboard(corpus_dataset, query_params={"q": name})
            app.session_state[PICKER_KEY] = True  # the picker, open: its first page shows broken files too
            app.run()
        assert not app.exception, (name, app.exception)
        if outcome == "ok":
            assert app.session_state["query"].dataset_path == name and not app.warning, name
        else:
            warning = shown(app.warning[0].value)
            assert "This link could not be followed exactly" in warning, name
            if name == "loop.jpg":  # the scan skips it, so it is not a dataset image
                assert "'loop.jpg' is not in" in warning
            else:
                assert "The link's query image cannot be used" in warning and outcome in warning, (name, warning)
            assert app.session_state["query"].dataset_path == corpus_dataset.query


def test_a_broken_dataset_file_picked_as_the_query_says_why(dashboard, corpus_dataset):
    app = dashboard(corpus_dataset)
    app.session_state[PICKER_KEY] = True
    app.run()
    app.button(key="use:empty.jpg").click().run()  # on the picker's first page, shown as a grey square
    assert not app.exception and app.session_state["query"].dataset_path == "empty.jpg"
    draw(app, canvas_rect((0, 0, 200, 200), image_side=480))  # on the grey square that says why
    app.run()
    assert not app.exception
    assert "empty.jpg: not a recognised image format" in shown(app.error[0].value)
