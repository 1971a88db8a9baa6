"""A configured deployment of the dashboard through streamlit's AppTest.

Every way a visitor names a folder (the sidebar, ``data=``, ``q=``) is tried with paths that leave
the served roots. An audit hook records every file opened and every folder listed below the
secret folder, so "nothing outside was read" is checked, not assumed.

AppTest cannot type a new option into a selectbox once it is on the page (it looks the value up
among the options), so a typed dataset or model name is given as the widget's session state
before the first run: the value the widget then holds, as when a visitor types it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.app_cases import ConstructedCase, canvas_rect, draw, field_png, open_picker, shown, upload
from vfs.dashboard.selection import display_path

# AppTest.user (a signed-in or signed-out visitor) is new in Streamlit 1.67, which needs Python 3.11: on Python 3.10
# (Streamlit 1.65 at most, as `make floors` runs) these tests cannot say who is signed in, so they do not run there
SIMULATED_USER = pytest.mark.skipif(sys.version_info < (3, 11), reason="AppTest.user needs Streamlit 1.67 (Python 3.11)")

_WATCHED: list[str] = []  # real paths of folders nothing may read from
_SEEN: list[str] = []
_IN_HOOK = threading.local()


def _audit(event: str, args: tuple) -> None:
    if not _WATCHED or event not in ("open", "os.listdir", "os.scandir") or getattr(_IN_HOOK, "busy", False):
        return
    path = args[0] if args else None
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    _IN_HOOK.busy = True
    try:
        real = os.path.realpath(os.fsdecode(path))
        if any(real == folder or real.startswith(folder + os.sep) for folder in _WATCHED):
            _SEEN.append(f"{event} {real}")
    finally:
        _IN_HOOK.busy = False


sys.addaudithook(_audit)  # hooks cannot be removed; this one does nothing unless a test watches a folder


@pytest.fixture
def watch_outside():
    """Record every read or listing below the given folders during the test."""
    def watch(*folders: Path) -> list[str]:
        _WATCHED.extend(os.path.realpath(folder) for folder in folders)
        return _SEEN

    yield watch
    _WATCHED.clear()
    _SEEN.clear()


@dataclass(frozen=True)
class Served:
    case: ConstructedCase
    second: Path  # a second root (no cache)
    outside: Path  # the secret folder, outside every root
    config: Path

    def write(self, extra: str = "", read_only: bool = True) -> Path:
        self.config.write_text(
            f"read_only = {'true' if read_only else 'false'}\n"
            f'[datasets]\nroots = ["{self.case.data}", "second"]\ndefault = "{self.case.data}"\n'
            f'[cache]\ndir = "{self.case.cache_dir}"\n' + extra)
        return self.config


@pytest.fixture
def served(constructed_case: ConstructedCase, tmp_path: Path) -> Served:
    """Roots: the constructed dataset (with its cache) and tmp/second; tmp/outside is secret.

    second/photos -> the constructed photos (a link into the other root: allowed),
    second/escape -> ../outside/secret (a link out), second/leaky/ holds ok.png and
    peek.png -> the secret image.
    """
    secret = tmp_path / "outside" / "secret"
    secret.mkdir(parents=True)
    shutil.copy(constructed_case.data / "photos" / "coins.jpg", secret / "secret.jpg")
    second = tmp_path / "second"
    (second / "leaky").mkdir(parents=True)
    shutil.copy(constructed_case.data / "photos" / "coffee.jpg", second / "leaky" / "ok.jpg")
    os.symlink(secret / "secret.jpg", second / "leaky" / "peek.jpg")
    os.symlink("../outside/secret", second / "escape")
    os.symlink(constructed_case.data / "photos", second / "photos")
    served = Served(constructed_case, second, tmp_path / "outside", tmp_path / "vfs.toml")
    served.write()
    return served


def opened(dashboard, served: Served, state: dict | None = None, **kwargs):
    app = dashboard(None, VFS_CONFIG=str(served.config), **kwargs)
    for key, value in (state or {}).items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, app.exception
    return app


def shows_nothing_secret(app) -> None:
    """The secret image's name is nowhere in the session or on the page (a typed path may name its folder)."""
    texts = [str(value) for value in app.session_state.values()]
    texts += [shown(element.value) for kind in ("markdown", "caption", "error", "warning", "info")
              for element in getattr(app, kind)]
    texts += [caption for image in app.image for caption in map(shown, image.captions)]
    assert not any("secret.jpg" in text for text in texts)


def test_the_watch_sees_what_a_local_dashboard_reads(dashboard, served, watch_outside, tmp_path):
    seen = watch_outside(served.outside)
    app = dashboard(None, VFS_DATA=str(served.outside / "secret"), VFS_CACHE_DIR=str(tmp_path / "c"),
                    VFS_READ_ONLY="1").run()  # without a deployment file any folder opens
    assert app.session_state["selection"].root == (served.outside / "secret").resolve()
    assert any(event.startswith("os.scandir") for event in seen)  # the dataset scan listed it
    (served.second / "escape" / "secret.jpg").read_bytes()
    assert seen[-1] == f"open {(served.outside / 'secret' / 'secret.jpg').resolve()}"  # through a link, too


def test_a_deployment_opens_on_its_default_dataset_and_offers_only_served_folders(dashboard, served,
                                                                                  watch_outside):
    seen = watch_outside(served.outside)
    app = opened(dashboard, served)
    selection = app.session_state["selection"]
    assert selection.root == served.case.data.resolve()
    assert any(key.startswith("canvas:") for key in app.session_state)  # the search page works
    data = display_path(served.case.data.resolve())
    second = display_path(served.second.resolve())
    # not escape/, nor second/ and second/leaky/, which hold links that lead out and are refused when chosen
    assert app.sidebar.selectbox(key="dataset_text").options == [data, f"{data}/pasted", f"{data}/photos",
                                                                 f"{second}/photos"]
    app.sidebar.selectbox(key="dataset_text").select(f"{data}/photos").run()
    assert app.session_state["selection"].root == (served.case.data / "photos").resolve()
    assert seen == []
    shows_nothing_secret(app)


ESCAPES = {
    "../outside": "outside the dataset folders",
    "{outside}": "outside the dataset folders",
    "{outside}/secret": "outside the dataset folders",
    "{second}/escape": "outside the dataset folders",
    "{second}/escape/": "outside the dataset folders",
    "{second}/../outside/secret": "outside the dataset folders",
    "{second}/photos/../../outside": "outside the dataset folders",
    "/": "outside the dataset folders",
    "{second}/%2e%2e/outside": "URL-encoded",
    "{second}/..%2foutside%2fsecret": "URL-encoded",
    "%2E%2E%2F%2E%2E%2Foutside": "URL-encoded",
    "{second}\\..\\outside": "backslash",
    "{second}/leaky": "links that lead outside the served folders (peek.jpg)",
    "{second}": "links that lead outside the served folders (escape, leaky/peek.jpg)",
}


def _escape(template: str, served: Served) -> str:
    return template.format(outside=served.outside, second=served.second)


@pytest.mark.parametrize("template", list(ESCAPES))
def test_a_typed_folder_outside_the_roots_is_refused_and_nothing_outside_is_read(dashboard, served, watch_outside,
                                                                                template, monkeypatch):
    monkeypatch.chdir(served.second)  # so that ../outside is the secret folder's parent
    seen = watch_outside(served.outside)
    app = opened(dashboard, served, state={"dataset_text": _escape(template, served)})
    assert ESCAPES[template] in shown(app.sidebar.error[0].value)
    assert app.session_state["selection"] is None
    assert "Choose a dataset folder" in shown(app.info[0].value)
    assert seen == []
    shows_nothing_secret(app)


@pytest.mark.parametrize("template", list(ESCAPES))
def test_a_link_to_a_folder_outside_the_roots_is_refused(dashboard, served, watch_outside, template, monkeypatch):
    monkeypatch.chdir(served.second)
    seen = watch_outside(served.outside)
    app = opened(dashboard, served, query_params={"data": _escape(template, served)})
    assert ESCAPES[template] in shown(app.sidebar.error[0].value)
    assert app.session_state["selection"] is None and seen == []
    shows_nothing_secret(app)


def test_a_nul_byte_in_the_folder_is_refused(dashboard, served):
    app = opened(dashboard, served, state={"dataset_text": f"{served.case.data}\x00/../.."})
    assert "NUL" in shown(app.sidebar.error[0].value) and app.session_state["selection"] is None


@pytest.mark.parametrize("query", ["../../outside/secret/secret.jpg", "{outside}/secret/secret.jpg",
                                   "photos/../../../outside/secret/secret.jpg", "%2e%2e%2f%2e%2e%2fsecret.jpg",
                                   "..%2f..%2foutside%2fsecret%2fsecret.jpg"])
def test_a_link_query_outside_the_dataset_is_refused(dashboard, served, watch_outside, query):
    seen = watch_outside(served.outside)
    app = opened(dashboard, served, query_params={"q": _escape(query, served)})
    assert "This link could not be followed exactly" in shown(app.warning[0].value)
    assert app.session_state["query"].dataset_path == served.case.query  # the dataset's first image instead
    assert seen == []


def test_links_to_the_other_root_work(dashboard, served, watch_outside):
    seen = watch_outside(served.outside)
    app = opened(dashboard, served, query_params={"data": str(served.second / "photos"), "q": "coffee.jpg"})
    assert app.session_state["selection"].root == (served.case.data / "photos").resolve()
    assert not app.sidebar.error and seen == []


# ---------------------------------------------------------------- models


@pytest.fixture
def models_folder(served: Served, lite0) -> Path:
    from safetensors.torch import save_file

    folder = served.config.parent / "models"
    folder.mkdir()
    state = {key: tensor.contiguous() for key, tensor in lite0.network.state_dict().items()}
    save_file(state, str(folder / "tf_efficientnet_lite0--copy.safetensors"))
    (served.outside / "stolen.safetensors").write_bytes(b"")
    os.symlink(served.outside / "stolen.safetensors", folder / "tf_efficientnet_lite0--stolen.safetensors")
    served.write('[models]\nallow = ["tf_efficientnet_lite0"]\nfolder = "models"\n')
    return folder


@pytest.mark.parametrize(("how", "name", "message"), [
    ("typed", "resnet18", "Model 'resnet18' is not offered by this deployment"),
    ("link", "resnet18", "Model 'resnet18' is not offered by this deployment"),
    ("link", "hf-hub:timm/resnet18.a1_in1k", "is not offered by this deployment"),
    ("typed", "file:../outside/secret/secret.jpg", "is not a weights file in this deployment's models folder"),
    ("link", "file:tf_efficientnet_lite0--stolen.safetensors", "is not a weights file"),
])
def test_models_the_deployment_does_not_offer_are_refused_without_loading(dashboard, served, models_folder,
                                                                         monkeypatch, how, name, message):
    loaded: list[str] = []
    monkeypatch.setattr("app_pages.shared.common.load_model", lambda *args: loaded.append(args[0]))
    app = opened(dashboard, served, **({"state": {"model_name": name}} if how == "typed" else
                                       {"query_params": {"model": name}}))
    assert message in shown(app.sidebar.error[0].value)
    assert app.session_state["selection"] is None and loaded == []


def test_the_picker_offers_allowed_models_and_the_folder_s_files(dashboard, served, models_folder):
    app = opened(dashboard, served)
    assert app.sidebar.selectbox(key="model_name").options == [
        "tf_efficientnet_lite0", "file:tf_efficientnet_lite0--copy.safetensors"]  # not the link that leads out
    app.sidebar.selectbox(key="model_name").select("file:tf_efficientnet_lite0--copy.safetensors").run()
    assert not app.exception
    model = app.session_state["selection"].model
    assert model.name == "tf_efficientnet_lite0" and model.weights == "file (tf_efficientnet_lite0--copy.safetensors)"
    assert any("Weights: file tf_efficientnet_lite0--copy.safetensors" in shown(c.value) for c in app.sidebar.caption)


# ---------------------------------------------------------------- uploads and read-only


def test_upload_limits_come_from_the_file(dashboard, served):
    served.write("[uploads]\nmax_mb = 1\nmax_pixels = 10_000\n")
    app = opened(dashboard, served)
    open_picker(app)
    app.run()
    uploader = app.file_uploader(key="upload")
    assert uploader.label == "An image of at most 1 MB" and uploader.proto.max_upload_size_mb == 1
    upload(app, "wide.png", field_png((200, 100)))
    assert "wide.png: 200×100 = 20,000 pixels exceeds the limit of 10,000" in shown(app.error[0].value)
    upload(app, "heavy.png", b"\x89PNG" + bytes(1024 * 1024))
    assert "uploads are limited to 1 MB" in shown(app.error[0].value)
    upload(app, "small.png", field_png((100, 90)))
    assert not app.error and app.session_state["query"].name == "small.png"
    draw(app, canvas_rect((10, 10, 60, 60), image_side=100))
    app.run()
    assert not app.exception and app.session_state["last_search"].outcome.query.name == "small.png"


def test_a_read_only_deployment_neither_builds_nor_deletes(dashboard, served):
    from app_pages.shared.common import index_jobs

    app = opened(dashboard, served, query_params={"data": str(served.second / "photos")})
    app.switch_page("app_pages/caches.py").run()
    assert not app.exception
    assert "read-only" in shown(app.info[0].value)
    assert not any(button.label == "Delete…" for button in app.button)
    assert next(button for button in app.button if button.label == "Build or update this cache").disabled
    assert index_jobs().get(app.session_state["selection"].cache_path) is None


# ---------------------------------------------------------------- sign-in


def _sign_in_config(served: Served) -> None:
    served.write('[auth]\nrequire_login = true\nallowed_emails = ["*@example.org"]\n')


@SIMULATED_USER
def test_sign_in_required_shows_only_the_sign_in_screen(dashboard, served, watch_outside):
    _sign_in_config(served)
    seen = watch_outside(served.case.data)
    app = dashboard(None, VFS_CONFIG=str(served.config))
    app.user = {"is_logged_in": False}
    app.run()
    assert not app.exception
    assert "sign in first" in shown(app.info[0].value)
    assert [button.label for button in app.button] == ["Sign in"]
    assert not app.sidebar.selectbox and "selection" not in app.session_state
    assert seen == []  # the dataset was not even listed


def test_sign_in_without_streamlit_auth_settings_stays_closed(dashboard, served):
    _sign_in_config(served)
    app = dashboard(None, VFS_CONFIG=str(served.config))  # AppTest's default user has no is_logged_in
    app.run()
    assert "[auth] settings are missing" in shown(app.error[0].value)
    assert not app.button and "selection" not in app.session_state


@SIMULATED_USER
def test_signed_in_visitors_on_the_list_see_the_dashboard_and_others_do_not(dashboard, served):
    _sign_in_config(served)
    app = dashboard(None, VFS_CONFIG=str(served.config))
    app.user = {"is_logged_in": True, "email": "ann@example.org", "name": "Ann"}
    app.run()
    assert not app.exception and app.session_state["selection"] is not None
    assert any("Signed in as ann@example.org" in shown(caption.value) for caption in app.sidebar.caption)
    assert any(button.label == "Sign out" for button in app.sidebar.button)

    stranger = dashboard(None, VFS_CONFIG=str(served.config))
    stranger.user = {"is_logged_in": True, "email": "eve@example.com"}
    stranger.run()
    assert "eve@example.com may not use this dashboard" in shown(stranger.error[0].value)
    assert "selection" not in stranger.session_state


def test_a_broken_deployment_file_stops_the_app_with_its_message(dashboard, served):
    served.config.write_text("[datasets]\nroots = [\"nowhere\"]\n")
    app = dashboard(None, VFS_CONFIG=str(served.config))
    app.run()
    assert not app.exception
    message = shown(app.error[0].value)
    assert message.startswith("The dashboard cannot start: ") and "[datasets] roots" in message
    assert "selection" not in app.session_state


def test_a_server_accepting_larger_uploads_than_the_deployment_does_not_start(dashboard, served):
    """Only Streamlit's server.maxUploadSize stops an oversized body before it is in memory (issue #17)."""
    from streamlit import config

    served.write("[uploads]\nmax_mb = 1\n")
    app = dashboard(None, VFS_CONFIG=str(served.config))
    config.set_option("server.maxUploadSize", 5)  # the dashboard fixture puts the option back afterwards
    app.run()
    assert not app.exception
    message = shown(app.error[0].value)
    assert message.startswith("The dashboard cannot start: ") and "maxUploadSize = 1" in message
    assert "selection" not in app.session_state and not app.file_uploader
    config.set_option("server.maxUploadSize", 1)
    assert "selection" in dashboard(None, VFS_CONFIG=str(served.config)).run().session_state  # at the limit it starts


def test_the_caches_table_names_only_served_datasets(dashboard, served, private_case, lite0):
    """A cache of a dataset outside the roots (built before the deployment) is listed without its path."""
    from vfs.cache.indexing import build_index

    build_index(served.outside / "secret", lite0, "blocks.6", 3, private_case.cache_dir)
    private = Served(private_case, served.second, served.outside, served.config)
    private.write()
    app = opened(dashboard, private)
    app.switch_page("app_pages/caches.py").run()
    assert not app.exception
    datasets = list(app.dataframe[0].value["dataset"])
    assert "(not served here)" in datasets and str(private_case.data) in datasets
    assert not any(str(served.outside) in name for name in datasets)
