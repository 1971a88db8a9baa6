"""Wiring shared by the pages: cached resources, the sidebar, links and build progress.

The logic lives in :mod:`vfs.dashboard`; this file only connects
it to Streamlit widgets, caches and session state.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import streamlit as st

from vfs.analysis.dataset_map import DatasetMap, dataset_map
from vfs.cache.catalog import manifest_token
from vfs.dashboard.build_cost import BuildCost, build_cost, cached_grids, seconds_per_image
from vfs.dashboard.config import AppConfig, parse_app_args
from vfs.dashboard.deployment import Access, DatasetRoots, ModelPolicy
from vfs.dashboard.indexing_jobs import IndexJob, IndexJobs, JobState
from vfs.dashboard.links import MapCluster, SharedSearch, from_params, to_params
from vfs.dashboard.query_images import QueryImage, unreadable_picture
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.selection import Selection, describe_progress, display_path, link_layer, max_grid, model_problem
from vfs.dashboard.uploads import UploadSweeper
from vfs.errors import ModelError, VfsError
from vfs.feature_search import FeatureSearch
from vfs.features.images import scan_images
from vfs.features.models import DEFAULT_MODEL, FeatureModel, list_models, load_model, weights_available
from vfs.pictures import fit_within, jpeg_bytes, load_preview
from vfs.similarity.region import Region

T = TypeVar("T")

@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def get_model(name: str, weights: str | None = None, weights_version: int | None = None) -> FeatureModel:
    """``weights``: a weights file (``weights_version``, its mtime, reloads it when replaced)."""
    return load_model(name, weights)


@st.cache_resource
def upload_sweeper() -> UploadSweeper:
    """One sweeper for the server: uploads that no uploader claims leave memory within a minute."""
    from streamlit.runtime import Runtime

    grace = float(os.environ.get("VFS_UPLOAD_GRACE_S", "30"))  # a test shortens it
    sweeper = UploadSweeper(Runtime.instance().uploaded_file_mgr, grace=grace)
    sweeper.start(interval=grace / 3)
    return sweeper


@st.cache_resource
def index_jobs() -> IndexJobs:
    """One set of background builds for the whole server (shared by every browser tab)."""
    return IndexJobs()


@st.cache_resource(show_spinner="Opening the feature cache…", max_entries=16)
def get_feature_search(root: str, model: str, fingerprint: str, layer: str, grid: int, cache_dir: str,
                       token: int | None, _selection: Selection) -> FeatureSearch:
    """The searcher of one cache version; ``token`` changes whenever the cache is rewritten."""
    search = _selection.feature_search()
    _ = search.cache  # memory-map now, so a broken cache is reported here rather than mid-search
    return search


#: The most central images of each Dataset-map cluster kept with the map (the Map page shows them).
MAP_CENTRAL_IMAGES = 6


@st.cache_resource(show_spinner="Clustering the dataset…", max_entries=8)
def _dataset_map(cache_path: str, token: int | None, levels: tuple[int, ...], _search: FeatureSearch) -> DatasetMap:
    return dataset_map(_search.cache, levels, central=MAP_CENTRAL_IMAGES, labels=_search.named_labels)


def dataset_map_of(selection: Selection, levels: tuple[int, ...], search: FeatureSearch) -> DatasetMap:
    """The Dataset map of the selection's cache with these levels: one per cache version, shared by every session
    (the Map page draws it; the Search page opens a link's cluster filter on it)."""
    return _dataset_map(str(selection.cache_path), manifest_token(selection.cache_path), levels, search)


def opened_search(selection: Selection) -> FeatureSearch | None:
    """The selection's searcher, or None after saying why its cache cannot be opened (e.g. it is damaged)."""
    try:
        return feature_search(selection)
    except VfsError as exc:
        st.error(as_markdown_text(exc))
        return None


def feature_search(selection: Selection) -> FeatureSearch:
    return get_feature_search(str(selection.root), selection.model.name, selection.model.fingerprint,
                              selection.layer.name, selection.grid, str(selection.cache_dir),
                              manifest_token(selection.cache_path), selection)


@st.cache_resource(show_spinner="Timing the model on this machine…", max_entries=64)
def model_speed(name: str, fingerprint: str, layer: str, grid: int, _model: FeatureModel) -> float:
    """Seconds per image of one model layer, measured once per server."""
    return seconds_per_image(_model, _model.layer(layer), grid)


def missing_cache_cost(current: Selection, images: int) -> BuildCost:
    speed = model_speed(current.model.name, current.model.fingerprint, current.layer.name, current.grid, current.model)
    return build_cost(images, current.layer, current.grid, speed)


@st.cache_data(ttl=5, show_spinner=False)
def cache_marks(cache_dir: str, root: str, name: str, fingerprint: str, _model: FeatureModel) -> dict[str, list[int]]:
    """The grids of each of the model's layers that have a cache of ``root``; re-read at most every 5 s."""
    return {layer.name: cached_grids(Path(cache_dir), Path(root), _model, layer, range(1, max_grid(layer) + 1))
            for layer in _model.layers}


@st.cache_data(show_spinner=False)
def model_names() -> list[str]:
    return list_models()


@st.cache_data(ttl=30, show_spinner=False)
def dataset_paths(root: str) -> list[str]:
    """The dataset's image paths (relative, sorted); rescanned at most every 30 s."""
    entries, _ = scan_images(root)
    return [entry.path for entry in entries]


@st.cache_data(ttl=30, show_spinner=False)
def served_folders(roots: tuple[Path, ...]) -> list[str]:
    """A deployment's dataset roots and the folders directly inside them; re-listed at most every 30 s."""
    return [display_path(folder) for folder in DatasetRoots(roots).choices()]


@st.cache_data(ttl=30, show_spinner=False)
def offered_models(allow: tuple[str, ...], default: str, folder: Path | None) -> list[str]:
    """The models a deployment offers (its models folder re-listed at most every 30 s)."""
    return ModelPolicy(allow, default, folder).choices(model_names())


def sign_in_gate(app: AppConfig) -> None:
    """Ask for sign-in when the deployment requires it; ``st.stop()`` until the visitor may enter."""
    access = app.access(st.user.to_dict())
    signing = app.deployment.sign_in if app.deployment is not None else None
    if access is Access.OPEN:
        if signing is not None and signing.require_login:
            with st.sidebar:
                st.caption(f"Signed in as {as_markdown_text(st.user.get('email') or st.user.get('name') or 'you')}")
                st.button("Sign out", key="sign_out", on_click=st.logout)
        return
    st.title("Visual Feature Search")
    if access is Access.SIGN_IN:
        st.info("This dashboard asks you to sign in first.")
        st.button("Sign in", key="sign_in", type="primary", on_click=st.login,
                  args=() if signing is None or signing.provider is None else (signing.provider,))
    elif access is Access.DENIED:
        st.error(f"{as_markdown_text(st.user.get('email'))} may not use this dashboard; sign in with another account.")
        st.button("Sign out", key="sign_out", on_click=st.logout)
    else:
        st.error("This deployment requires sign-in, but Streamlit's [auth] settings are missing from "
                 ".streamlit/secrets.toml; see docs/deploy.md.")
    st.stop()


LAYOUT_CSS = Path(__file__).with_name("layout.css")


def page_style() -> None:
    """The page layout rules of layout.css (Streamlit sends a style-only st.html without taking up room)."""
    st.html(f"<style>{LAYOUT_CSS.read_text(encoding='utf-8')}</style>")


def app_config() -> AppConfig:
    """The options after ``--`` and the deployment file; a bad file, or a server that accepts larger uploads than
    the deployment allows, stops the app with its message."""
    try:
        app = parse_app_args(sys.argv[1:], os.environ)
    except VfsError as exc:
        st.error(f"The dashboard cannot start: {as_markdown_text(exc)}")
        st.stop()
    problem = None if app.deployment is None else app.uploads.server_problem(st.get_option("server.maxUploadSize"))
    if problem is not None:
        st.error(f"The dashboard cannot start: {as_markdown_text(problem)}")
        st.stop()
    return app


@st.cache_data(max_entries=256, show_spinner=False)
def preview_jpeg(path: str, max_side: int) -> bytes:
    """A thumbnail; for a file that cannot be decoded, a grey square saying why."""
    try:
        image, _ = load_preview(path, max_side)
    except (VfsError, OSError) as exc:  # PIL raises OSError subclasses for files it cannot identify
        image = unreadable_picture(str(exc) or type(exc).__name__, max_side)
    return jpeg_bytes(image)


@st.cache_data(max_entries=16, show_spinner=False)
def canvas_background(query_key: str, max_side: int, _picture_source: QueryImage,
                      _root: Path) -> tuple[bytes, tuple[int, int]]:
    """The query image as shown on the canvas (JPEG) and the full image's (width, height).

    A dataset file that cannot be decoded shows why in its place; searching from it reports the same.
    """
    try:
        picture = _picture_source.picture(_root)
    except VfsError as exc:
        picture = unreadable_picture(f"{exc}. Choose another query image.", max_side)
    return jpeg_bytes(fit_within(picture, max_side), quality=90), picture.size


def remembered(name: str, key: tuple, make: Callable[[], T]) -> T:
    """``make()``, kept in the session under ``name`` until ``key`` changes: reruns that change nothing cost nothing."""
    last = st.session_state.get(name)
    if last is None or last[0] != key:
        last = (key, make())
        st.session_state[name] = last
    return last[1]


def config() -> AppConfig:
    return st.session_state["config"]


def selection() -> Selection | None:
    return st.session_state.get("selection")


#: Widget values the user chose that outlive the pages showing them: Streamlit forgets a widget's value in a run
#: that does not draw it (another page, a cache still missing), and the sidebar's per-model layer and grid pickers.
#: Whether the Search page's figures are open (and so built and sent for every search), and its query picker.
FIGURES_KEY, PICKER_KEY = "show_figures", "query_picker"
SETTINGS = ("top_k", "exclude_query", "approximate", "label_filter", "any_size", "region_alone", FIGURES_KEY, "map_top",
            "map_leaves")
_PICKER_PREFIXES = ("layer:", "grid:")


def keep_settings() -> None:
    """Re-assign the user's settings before any widget is drawn, so a run that does not draw them keeps them."""
    for key in list(st.session_state):
        if key in SETTINGS or key.startswith(_PICKER_PREFIXES):
            st.session_state[key] = st.session_state[key]


def read_link_once() -> None:
    """Apply the URL's parameters when a session starts; later runs own the URL."""
    if "link" in st.session_state:
        return
    params: dict[str, str | list[str]] = dict(st.query_params.to_dict())
    if "r" in st.query_params:  # a region set repeats r=, which to_dict() cuts to its last value
        params["r"] = st.query_params.get_all("r")
    shared, problems = from_params(params)
    st.session_state["link"] = shared
    st.session_state["link_problems"] = [str(problem) for problem in problems]
    st.session_state["link_layer_pending"] = shared.layer is not None
    st.session_state["link_query_pending"] = shared.query is not None or shared.upload is not None
    st.session_state["link_approximate_pending"] = shared.approximate is not None
    st.session_state["link_set_pending"] = bool(shared.regions)
    st.session_state["link_cluster_pending"] = shared.cluster  # opened on the Search page, which has the map's cache
    st.session_state["link_mode_pending"] = shared.mode  # applied to the link's search once it runs
    for key, value in (("dataset_text", shared.dataset), ("model_name", shared.model),
                       ("top_k", shared.top_k), ("exclude_query", shared.exclude_query),
                       ("approximate", shared.approximate), ("any_size", shared.any_size),
                       ("region_alone", shared.region_alone),
                       ("label_filter", None if shared.labels is None else list(shared.labels))):
        if value is not None:
            st.session_state[key] = value


def report_link_problem(message: str) -> None:
    st.session_state["link_problems"].append(message)


def show_link_problems() -> None:
    problems = st.session_state.get("link_problems", [])
    if problems:
        st.warning("This link could not be followed exactly:\n\n"
                   + "\n".join(f"- {as_markdown_text(problem)}" for problem in problems))


def write_link(current: Selection, query: QueryImage, region: Region | None, top_k: int, exclude_query: bool,
               approximate: bool | None = None, labels: list[str] | None = None, any_size: bool | None = None,
               regions: tuple | None = None, cluster: MapCluster | None = None, mode: int | None = None,
               region_alone: bool | None = None) -> None:
    """Put the search on screen into the URL; an upload that is not kept on the server is left out."""
    params = to_params(SharedSearch(
        # the picker's name, which for a deployment's weights file is not the architecture's
        dataset=display_path(current.root), model=st.session_state.get("model_name") or current.model.name,
        layer=current.layer.name, grid=current.grid,
        query=query.dataset_path, upload=query.upload_id, region=region if query.shareable else None, top_k=top_k,
        exclude_query=exclude_query, approximate=approximate, labels=tuple(labels) if labels else None,
        any_size=any_size or None, regions=regions, cluster=cluster, mode=mode, region_alone=region_alone or None))
    shown = {**st.query_params.to_dict(), **({"r": st.query_params.get_all("r")} if "r" in st.query_params else {})}
    if params != shown:
        st.query_params.from_dict(params)


def how_to_build(current: Selection) -> str:
    """Markdown for a read-only dashboard's missing cache; a deployment's visitors are not shown its server paths."""
    if config().deployment is not None:
        return "Ask whoever runs this dashboard to build it."
    return f"Build it with {as_markdown_text(current.index_command())}."


def named_model(name: str) -> FeatureModel:
    """The model a picker's name stands for (a deployment's policy applies), loaded once per server."""
    architecture, weights = config().resolve_model(name)
    if weights is None:
        return get_model(architecture)
    return get_model(architecture, str(weights), weights.stat().st_mtime_ns)


def dataset_picker(app: AppConfig, key: str, default: Path, help: str) -> Path | None:
    """A dataset folder input (a deployment offers its served folders); the folder, or None after an error."""
    st.session_state.setdefault(key, display_path(default))
    roots = None if app.deployment is None else app.deployment.datasets
    if roots is None:
        text = st.text_input("Dataset folder", key=key, help=help)
    else:
        text = st.selectbox("Dataset folder", served_folders(roots.roots), key=key, accept_new_options=True,
                            help=f"{help} This deployment serves these folders; a folder inside one can be typed.")
    try:
        return app.resolve_dataset(text or "")
    except VfsError as exc:
        st.error(as_markdown_text(exc))
        return None


def model_label(name: str) -> str:
    return f"{name} · offline" if weights_available(name) else f"{name} · needs a download"


def model_picker(app: AppConfig, key: str, default: str | None = None) -> str:
    """A model name input: bundled models first, any timm name can be typed (within a deployment's allow-list)."""
    policy = None if app.deployment is None else app.deployment.models
    st.session_state.setdefault(key, default or (DEFAULT_MODEL if policy is None else policy.default))
    if policy is None:
        return st.selectbox("Model", model_names(), key=key, accept_new_options=True, format_func=model_label,
                            help="Models with bundled weights come first and work offline; the others download "
                                 "their weights the first time; any timm name can be typed.")
    return st.selectbox("Model", offered_models(policy.allow, policy.default, policy.folder), key=key,
                        accept_new_options=True, help=f"The models this deployment offers; names matching "
                                                      f"{as_markdown_text(', '.join(policy.allow))} can be typed.")


def _model(app: AppConfig) -> FeatureModel | None:
    name = model_picker(app, "model_name")
    try:
        architecture, weights = app.resolve_model(name or "")
        available = f"file {weights.name}" if weights is not None else weights_available(architecture)
        st.caption(f"Weights: {as_markdown_text(available)}, offline." if available else
                   "Weights: timm's pretrained download (needs the internet the first time).")
        return named_model(name or "")
    except ModelError as exc:
        st.error(as_markdown_text(model_problem(name or "", exc)))
        return None
    except (VfsError, OSError) as exc:
        st.error(as_markdown_text(exc))
        return None


def _layer_and_grid(model: FeatureModel, root: Path | None, cache_dir: Path) -> tuple[str, int]:
    layer_key = f"layer:{model.name}"
    if st.session_state.pop("link_layer_pending", False):
        shared: SharedSearch = st.session_state["link"]
        layer, grid, problems = link_layer(shared, model)
        for problem in problems:
            report_link_problem(str(problem))
        if layer is not None:
            st.session_state[layer_key] = layer.name
            if grid is not None:
                st.session_state[f"grid:{model.name}:{layer.name}"] = grid
    st.session_state.setdefault(layer_key, model.default_layer.name)
    marks = {} if root is None else cache_marks(str(cache_dir), str(root), model.name, model.fingerprint, model)

    def layer_label(name: str) -> str:
        return f"{model.layer(name).describe()} · cached" if marks.get(name) else model.layer(name).describe()

    layer_name = st.selectbox("Layer", [info.name for info in model.layers], key=layer_key, format_func=layer_label,
                              help="Deeper layers match meaning, shallower ones texture and colour; "
                                   "\"cached\" layers can be searched at once.")
    layer = model.layer(layer_name)
    grid_key = f"grid:{model.name}:{layer.name}"
    st.session_state.setdefault(grid_key, layer.default_grid)
    grid = st.number_input("Grid size", min_value=1, max_value=max_grid(layer), key=grid_key,
                           help="The layer's map is pooled to G×G cells; a match is a window of cells.")
    cached = marks.get(layer.name, [])
    st.caption("Cached grids of this layer: " + ", ".join(f"{g}×{g}" for g in cached) if cached else
               "No grid of this layer is cached yet.")
    return layer.name, int(grid)


def sidebar(app: AppConfig) -> Selection | None:
    """The dataset, model, layer and grid pickers; None while any of them is unusable."""
    with st.sidebar:
        st.subheader("Dataset and model")
        root = dataset_picker(app, "dataset_text", app.default_dataset,
                              "Any folder of images, searched recursively; sub-folder names become labels.")
        model = _model(app)
        if model is None:
            return None
        layer_name, grid = _layer_and_grid(model, root, app.cache_dir)
        weights_file = app.resolve_model(st.session_state["model_name"])[1]
        current = None if root is None else Selection(root, model, model.layer(layer_name), grid, app.cache_dir,
                                                      weights_file)
        # the pages show the build of the selected cache; other builds keep going and are shown here
        others = [job.path for job in index_jobs().running() if current is None or job.path != current.cache_path]
        if others:
            st.caption("Other index builds")
            build_progress(tuple(others), "sidebar")
    return current


def start_build(current: Selection) -> IndexJob:
    return index_jobs().start(current.cache_path, current.describe(), current.build)


@st.fragment(run_every=1.0)
def build_progress(paths: tuple[Path, ...], place: str) -> None:
    """Progress and a cancel button per build; once one stops, the whole page is refreshed."""
    jobs = [index_jobs().get(path) for path in paths]
    if any(job is None or job.state is not JobState.RUNNING for job in jobs):
        st.rerun()
    for job in jobs:
        assert job is not None
        st.progress(job.fraction,
                    text=f"Indexing {as_markdown_text(job.description)}: {describe_progress(job.progress)}")
        st.button("Cancel", key=f"cancel:{place}:{job.path}", on_click=job.cancel,
                  help="Stops after the current batch; finished shards are kept and a later build resumes.")
