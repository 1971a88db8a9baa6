"""Compare page: the Search page's query and region, searched across 2–4 setups side by side.

A setup is a model, layer, grid and dataset (:class:`vfs.analysis.setup_comparison.Setup`). Each gets its
gallery and score distribution; setups over the same dataset get their agreement (Spearman ρ of
every image's score, top-k overlap) and a score scatter; setups over different datasets get their
distributions overlaid.
"""

from __future__ import annotations

import io
from pathlib import Path

import streamlit as st
from PIL import Image

from app_pages.shared import common, result_filters
from vfs.analysis.setup_comparison import (
    LETTERS,
    MAX_SETUPS,
    MIN_SETUPS,
    PairAgreement,
    Setup,
    SetupResult,
    agreements,
    aligned_scores,
    search_setup,
    setup_names,
    spans_datasets,
)
from vfs.cache.catalog import manifest_token
from vfs.dashboard.gallery import thumbnail_caption
from vfs.dashboard.indexing_jobs import JobState
from vfs.dashboard.links import MAX_TOP_K
from vfs.dashboard.plots import overlaid_distributions, score_distribution, score_scatter, shared_score_range
from vfs.dashboard.query_images import QueryImage
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.selection import CacheState, Selection, display_path, max_grid
from vfs.errors import VfsError
from vfs.pictures import jpeg_bytes, match_jpegs, region_picture
from vfs.similarity.region import Region

SETUPS_KEY = "compare_setups"
RESULTS_KEY = "compare_results"
THUMBNAIL_SIDE = 200
QUERY_SIDE = 260


def selection_of(setup: Setup) -> Selection:
    model = common.named_model(setup.model)
    app = common.config()
    return Selection(setup.dataset, model, model.layer(setup.layer), setup.grid, app.cache_dir,
                     app.resolve_model(setup.model)[1])


def setups() -> list[Setup]:
    """The setups of this session; the sidebar's selection to begin with."""
    if SETUPS_KEY not in st.session_state:
        current = common.selection()
        st.session_state[SETUPS_KEY] = [] if current is None else [Setup(
            st.session_state.get("model_name") or current.model.name, current.layer.name, current.grid, current.root)]
    return st.session_state[SETUPS_KEY]


def add_setup(setup: Setup) -> None:
    chosen = setups()
    if setup in chosen:
        st.session_state["compare_message"] = "That setup is already in the comparison."
    elif len(chosen) >= MAX_SETUPS:
        st.session_state["compare_message"] = f"At most {MAX_SETUPS} setups can be compared."
    else:
        chosen.append(setup)


def add_picked() -> None:
    """Add what the pickers show now (read when clicked: a picker changed in the same moment counts)."""
    name = st.session_state.get("compare_model") or ""
    try:
        root = common.config().resolve_dataset(st.session_state.get("compare_dataset") or "")
        model = common.named_model(name)
    except (VfsError, OSError) as exc:
        st.session_state["compare_message"] = str(exc)
        return
    layer = model.layer(st.session_state.get(f"compare_layer:{name}") or model.default_layer.name)
    grid = st.session_state.get(f"compare_grid:{name}:{layer.name}") or layer.default_grid  # not shown yet
    add_setup(Setup(name, layer.name, int(grid), root))


def remove_setup(setup: Setup) -> None:
    st.session_state[SETUPS_KEY] = [s for s in setups() if s != setup]


def setup_picker(current: Selection | None) -> None:
    """Pickers for one more setup and the button that adds it."""
    app = common.config()
    dataset_column, model_column, layer_column, grid_column = st.columns([3, 3, 3, 1])
    with dataset_column:
        root = common.dataset_picker(app, "compare_dataset", current.root if current is not None else
                                     app.default_dataset, "The same dataset compares setups image by image; another "
                                     "one (e.g. out-of-domain pictures) compares their score distributions.")
    with model_column:
        name = common.model_picker(app, "compare_model", st.session_state.get("model_name") or
                                   (current.model.name if current is not None else None))
    try:
        model = common.named_model(name or "")
    except (VfsError, OSError) as exc:
        model_column.error(as_markdown_text(exc))
        return
    layer_key = f"compare_layer:{name}"
    st.session_state.setdefault(layer_key, model.default_layer.name)
    layer_name = layer_column.selectbox("Layer", [info.name for info in model.layers], key=layer_key,
                                        format_func=lambda n: model.layer(n).describe())
    layer = model.layer(layer_name)
    grid_key = f"compare_grid:{name}:{layer.name}"
    st.session_state.setdefault(grid_key, layer.default_grid)
    grid_column.number_input("Grid", min_value=1, max_value=max_grid(layer), key=grid_key)
    full = len(setups()) >= MAX_SETUPS
    st.button("Add this setup", key="compare_add", type="primary", disabled=root is None or full,
              on_click=add_picked, help=f"At most {MAX_SETUPS} setups." if full else None)


def cache_ready(position: int, selection: Selection) -> bool:
    """Whether the setup can be searched; otherwise its build's progress, or a button that starts one."""
    paths = common.dataset_paths(str(selection.root))
    state, images = selection.cache_state(len(paths))
    job = common.index_jobs().get(selection.cache_path)
    if job is not None and job.state is JobState.RUNNING:
        common.build_progress((selection.cache_path,), f"compare{position}")
        return False
    if state is not CacheState.MISSING and images > 0:
        if state is CacheState.OUT_OF_DATE:
            st.caption(f"The cache holds {images:,} of the dataset's {len(paths):,} images.")
        return True
    if not paths:
        st.error(f"No images in {as_markdown_text(display_path(selection.root))}.")
    elif common.config().read_only:
        st.warning(f"No feature cache, and this deployment is read-only. {common.how_to_build(selection)}")
    else:
        if job is not None and job.state is JobState.FAILED:
            st.error(f"Indexing failed: {as_markdown_text(job.error)}")
        st.button(f"Build its cache ({len(paths):,} images)", key=f"compare_build:{position}",
                  on_click=common.start_build, args=(selection,))
    return False


def setup_list(chosen: list[Setup]) -> list[tuple[Setup, Selection]]:
    """Each setup with its status and a remove button; returns the setups ready to search."""
    ready = []
    for position, setup in enumerate(chosen):
        name_column, status_column, remove_column = st.columns([4, 4, 1], vertical_alignment="center")
        name_column.markdown(f"**{LETTERS[position]}** · {as_markdown_text(setup.describe())}")
        remove_column.button(":material/close:", key=f"compare_remove:{position}", on_click=remove_setup,
                             args=(setup,), help="Remove this setup")
        with status_column:
            try:
                selection = selection_of(setup)
            except (VfsError, OSError) as exc:
                st.error(as_markdown_text(exc))
                continue
            if cache_ready(position, selection):
                st.caption("Ready")
                ready.append((setup, selection))
    return ready


def query_and_region() -> tuple[QueryImage, Path, Region] | None:
    """The Search page's query, its dataset folder and the region drawn on it, when there is one."""
    query: QueryImage | None = st.session_state.get("query")
    region: Region | None = st.session_state.get("search_region")
    root = st.session_state.get("query_root")
    if query is None or region is None or root is None:
        return None
    return query, Path(root), region


def show_query(query: QueryImage, root: Path, region: Region, grid: int) -> None:
    picture, size = common.canvas_background(f"{query.key}@{root}", QUERY_SIDE, query, root)
    shown = Image.open(io.BytesIO(picture))
    st.image(jpeg_bytes(region_picture(shown, region.grid_weights(size, grid))), width=QUERY_SIDE,
             caption=f"Query: {as_markdown_text(query.name)}, its region on a {grid}×{grid} grid (draw another on the Search page)")


def run(ready: list[tuple[Setup, Selection]], query: QueryImage, root: Path, region: Region, top_k: int,
        exclude: bool) -> tuple[list[SetupResult], list[list[bytes]], list[str]]:
    """Every ready setup's search with its thumbnails, and the errors of those that could not search."""
    key = (tuple((setup, manifest_token(selection.cache_path)) for setup, selection in ready), query.key,
           str(root), region.token, top_k, exclude)
    return common.remembered(RESULTS_KEY, key, lambda: _searched(ready, query, root, region, top_k, exclude))


def _searched(ready: list[tuple[Setup, Selection]], query: QueryImage, root: Path, region: Region, top_k: int,
              exclude: bool) -> tuple[list[SetupResult], list[list[bytes]], list[str]]:
    results, thumbnails, errors = [], [], []
    for setup, selection in ready:
        try:
            outcome = search_setup(setup, common.feature_search(selection), query.source(root), region, top_k,
                                   exclude)
        except VfsError as exc:  # e.g. the region's features are all zero at this layer
            errors.append(f"{setup.describe()}: {exc}")
            continue
        results.append(outcome)
        thumbnails.append(match_jpegs([(setup.dataset / m.path, m.box) for m in outcome.result.matches],
                                      THUMBNAIL_SIDE))
    return results, thumbnails, errors


def side_by_side(results: list[SetupResult], thumbnails: list[list[bytes]], names: list[str]) -> None:
    # one score axis for every setup, so their histograms compare at a glance
    score_axis = shared_score_range([outcome.result.scores for outcome in results])
    for position, (column, outcome) in enumerate(zip(st.columns(len(results)), results)):
        with column:
            st.markdown(f"**{as_markdown_text(names[position])}**")
            st.caption(f"{as_markdown_text(outcome.setup.describe())} · {len(outcome.paths):,} images · "
                       f"{outcome.seconds * 1000:.0f} ms")
            matches = outcome.result.matches
            for start in range(0, len(matches), 2):
                for offset, cell in enumerate(st.columns(2)):
                    if start + offset < len(matches):
                        match = matches[start + offset]
                        caption = thumbnail_caption(start + offset + 1, match.score,
                                                    outcome.labels[match.index] if match.label else None, match.path)
                        cell.image(thumbnails[position][start + offset], width="stretch",
                                   caption=as_markdown_text(caption))
            if matches:
                figure = score_distribution(outcome.result.scores, outcome.paths, outcome.labels, matches[-1].score,
                                            x_range=score_axis)
                st.plotly_chart(figure, key=f"compare_distribution:{position}", config={"displaylogo": False})


def agreement_section(results: list[SetupResult], pairs: list[PairAgreement], names: list[str], top_k: int) -> None:
    st.subheader("Agreement over the same dataset")
    st.caption(f"Spearman ρ ranks every image by its score in each setup and correlates the ranks; the top-{top_k} "
               "overlap counts the images both setups put in their top k (Jaccard: shared / in either).")
    st.dataframe([pair.row(names) for pair in pairs], hide_index=True, width="stretch")
    options = list(range(len(pairs)))
    chosen = st.selectbox("Scatter of the scores", options, key="compare_pair",
                          format_func=lambda i: f"{names[pairs[i].first]} against {names[pairs[i].second]}")
    pair = pairs[chosen if chosen in options else 0]
    paths, first, second = aligned_scores(results[pair.first], results[pair.second])
    st.plotly_chart(score_scatter(first, second, paths, names[pair.first], names[pair.second], top_k),
                    key="compare_scatter", config={"displaylogo": False})


def page() -> None:
    current = common.selection()
    st.header("Compare setups")
    st.caption("The query and region of the Search page, searched with up to four models, layers, grids or "
               "datasets side by side.")
    chosen = setups()
    names = setup_names(chosen)
    message = st.session_state.pop("compare_message", None)
    if message:
        st.warning(as_markdown_text(message))
    ready = setup_list(chosen)
    with st.expander("Add a setup", expanded=len(chosen) < MIN_SETUPS):
        setup_picker(current)
    if len(chosen) < MIN_SETUPS:
        st.info(f"Add at least {MIN_SETUPS - len(chosen)} more setup{'s' if MIN_SETUPS - len(chosen) > 1 else ''} "
                "to compare.")
    found = query_and_region()
    if found is None:
        st.info("Choose a query image and draw a region on the Search page; it is searched here across the setups.")
        return
    query, root, region = found
    query_column, controls_column = st.columns([1, 2])
    with query_column:
        shown_grid = ready[0][1].grid if ready else current.grid if current is not None else None
        if shown_grid is not None:
            show_query(query, root, region, shown_grid)
    with controls_column:
        searched_k, searched_exclude = result_filters.last_settings()  # the Search page's, to begin with
        st.session_state.setdefault("compare_top_k", searched_k)
        st.session_state.setdefault("compare_exclude", searched_exclude)
        top_k = st.slider("Results (k)", 1, MAX_TOP_K, key="compare_top_k")
        exclude = st.toggle("Exclude the query image", key="compare_exclude")
    if len(ready) < 1:
        return
    results, thumbnails, errors = run(ready, query, root, region, top_k, exclude)
    for error in errors:
        st.error(as_markdown_text(error))
    if not results:
        return
    result_names = [names[chosen.index(outcome.setup)] for outcome in results]
    side_by_side(results, thumbnails, result_names)
    pairs = agreements(results, top_k)
    if pairs:
        agreement_section(results, pairs, result_names, top_k)
    if spans_datasets(results):
        st.subheader("Score distributions across datasets")
        st.caption("Each setup's scores as a share of its dataset's images: where the query's region is found "
                   "more or less alike in one dataset than in another.")
        st.plotly_chart(overlaid_distributions({name: r.result.scores for name, r in zip(result_names, results)}),
                        key="compare_overlay", config={"displaylogo": False})


page()
