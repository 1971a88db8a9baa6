"""Wiring shared by the pages: cached resources, the sidebar, links and build progress.

The logic lives in :mod:`vfs.dashboard` and the other ``vfs`` modules; this file only connects
it to Streamlit widgets, caches and session state.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vfs.api import FeatureSearch
from vfs.background import IndexJob, IndexJobs, JobState
from vfs.catalog import manifest_token
from vfs.dashboard import (
    AppConfig,
    QueryImage,
    Selection,
    describe_progress,
    display_path,
    link_layer,
    max_grid,
    resolve_dataset,
)
from vfs.demo import DEMO_DIR, gather_demo_images
from vfs.errors import VfsError
from vfs.images import scan_images
from vfs.models import DEFAULT_MODEL, FeatureModel, list_models, load_model, weights_available
from vfs.region import Region
from vfs.render import fit_within, jpeg_bytes, load_preview
from vfs.share import SharedSearch, from_params, to_params


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def get_model(name: str) -> FeatureModel:
    return load_model(name)


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


def feature_search(selection: Selection) -> FeatureSearch:
    return get_feature_search(str(selection.root), selection.model.name, selection.model.fingerprint,
                              selection.layer.name, selection.grid, str(selection.cache_dir),
                              manifest_token(selection.cache_path), selection)


@st.cache_data(show_spinner=False)
def model_names() -> list[str]:
    return list_models()


@st.cache_resource(show_spinner="Gathering the demo photographs…")
def demo_photos(folder: str) -> int:
    return len(gather_demo_images(folder))


@st.cache_data(ttl=30, show_spinner=False)
def dataset_paths(root: str) -> list[str]:
    """The dataset's image paths (relative, sorted); rescanned at most every 30 s."""
    entries, _ = scan_images(root)
    return [entry.path for entry in entries]


@st.cache_data(max_entries=256, show_spinner=False)
def preview_jpeg(path: str, max_side: int) -> bytes:
    image, _ = load_preview(path, max_side)
    return jpeg_bytes(image)


@st.cache_data(max_entries=16, show_spinner=False)
def canvas_background(query_key: str, max_side: int, _picture_source: QueryImage,
                      _root: Path) -> tuple[bytes, tuple[int, int]]:
    """The query image as shown on the canvas (JPEG) and the full image's (width, height)."""
    picture = _picture_source.picture(_root)
    return jpeg_bytes(fit_within(picture, max_side), quality=90), picture.size


def config() -> AppConfig:
    return st.session_state["config"]


def selection() -> Selection | None:
    return st.session_state.get("selection")


def read_link_once() -> None:
    """Apply the URL's parameters when a session starts; later runs own the URL."""
    if "link" in st.session_state:
        return
    shared, problems = from_params(st.query_params.to_dict())
    st.session_state["link"] = shared
    st.session_state["link_problems"] = [str(problem) for problem in problems]
    st.session_state["link_layer_pending"] = shared.layer is not None
    st.session_state["link_query_pending"] = shared.query is not None
    for key, value in (("dataset_text", shared.dataset), ("model_name", shared.model),
                       ("top_k", shared.top_k), ("exclude_query", shared.exclude_query)):
        if value is not None:
            st.session_state[key] = value


def report_link_problem(message: str) -> None:
    st.session_state["link_problems"].append(message)


def show_link_problems() -> None:
    problems = st.session_state.get("link_problems", [])
    if problems:
        st.warning("This link could not be followed exactly:\n\n" + "\n".join(f"- {p}" for p in problems))


def write_link(current: Selection, query: QueryImage, region: Region | None, top_k: int, exclude_query: bool) -> None:
    """Put the search on screen into the URL; an upload cannot travel in a link, so it is left out."""
    shareable = query.dataset_path is not None
    params = to_params(SharedSearch(
        dataset=display_path(current.root), model=current.model.name, layer=current.layer.name, grid=current.grid,
        query=query.dataset_path, region=region if shareable else None, top_k=top_k, exclude_query=exclude_query))
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)


def _dataset(app: AppConfig) -> Path | None:
    st.session_state.setdefault("dataset_text", display_path(app.default_dataset))
    text = st.text_input("Dataset folder", key="dataset_text",
                         help="Any folder of images, searched recursively; sub-folder names become labels.")
    try:
        if app.data is None and Path(text).expanduser().resolve() == DEMO_DIR.resolve():
            demo_photos(str(DEMO_DIR))
        return resolve_dataset(text)
    except VfsError as exc:
        st.error(str(exc))
        return None


def _model() -> FeatureModel | None:
    st.session_state.setdefault("model_name", DEFAULT_MODEL)
    name = st.selectbox("Model", model_names(), key="model_name", accept_new_options=True,
                        help="Models with bundled weights come first and work offline; any timm name can be typed.")
    available = weights_available(name)
    st.caption(f"Weights: {available}, offline." if available else
               "Weights: timm's pretrained download (needs the internet the first time).")
    try:
        return get_model(name)
    except VfsError as exc:
        st.error(str(exc))
        return None


def _layer_and_grid(model: FeatureModel) -> tuple[str, int]:
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
    layer_name = st.selectbox("Layer", [info.name for info in model.layers], key=layer_key,
                              format_func=lambda name: model.layer(name).describe(),
                              help="Deeper layers match meaning, shallower ones texture and colour.")
    layer = model.layer(layer_name)
    grid_key = f"grid:{model.name}:{layer.name}"
    st.session_state.setdefault(grid_key, layer.default_grid)
    grid = st.number_input("Grid size", min_value=1, max_value=max_grid(layer), key=grid_key,
                           help="The layer's map is pooled to G×G cells; a match is a window of cells.")
    return layer.name, int(grid)


def sidebar(app: AppConfig) -> Selection | None:
    """The dataset, model, layer and grid pickers; None while any of them is unusable."""
    with st.sidebar:
        st.subheader("Dataset and model")
        root = _dataset(app)
        model = _model()
        if model is None:
            return None
        layer_name, grid = _layer_and_grid(model)
        current = None if root is None else Selection(root, model, model.layer(layer_name), grid, app.cache_dir)
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
        st.progress(job.fraction, text=f"Indexing {job.description}: {describe_progress(job.progress)}")
        st.button("Cancel", key=f"cancel:{place}:{job.path}", on_click=job.cancel,
                  help="Stops after the current batch; finished shards are kept and a later build resumes.")
