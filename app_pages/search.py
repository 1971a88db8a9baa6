"""Search page: pick a query image, draw a region on it, see where the model finds it elsewhere."""

from __future__ import annotations

import contextlib
import io
import random

import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator
from streamlit_drawable_canvas import st_canvas

from app_pages.shared import canvas_companion, common, labels_panel, queries_panel, result_filters
from vfs.cache.catalog import manifest_token
from vfs.dashboard.canvas import (
    FILL_OPACITY,
    RECTANGLE_OUTLINE,
    STROKE_OPACITY,
    CanvasFit,
    canvas_size,
    drawing_colour,
    drawing_to_region,
    region_objects,
)
from vfs.dashboard.gallery import gallery_caption, thumbnail_caption, thumbnails_of
from vfs.dashboard.indexing_jobs import JobState
from vfs.dashboard.links import MAX_TOP_K
from vfs.dashboard.plots import score_distribution
from vfs.dashboard.queries import scale_caption
from vfs.dashboard.query_images import QueryImage, filter_paths, keep_upload, link_query, load_upload, page_of
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.searching import (
    SearchOutcome,
    ShownSearch,
    approximate_problem,
    describe_search,
    run_search,
    window_heatmap,
    window_region,
)
from vfs.dashboard.selection import CacheState, Selection, display_path
from vfs.errors import ImageError, VfsError
from vfs.feature_search import FeatureSearch
from vfs.features.images import IMAGE_EXTENSIONS
from vfs.pictures import heatmap_picture, jpeg_bytes, load_preview, match_jpegs, match_picture, region_picture
from vfs.similarity.exact import Match
from vfs.similarity.kernel import fallback_note
from vfs.similarity.region import Region

CANVAS_SIDE = 480
THUMBNAIL_SIDE = 256
PICKER_COLUMNS = 6
PICKER_PER_PAGE = 12
THUMBNAIL_WIDTH = 180  # a gallery card's width: two beside the canvas at 1400 px wide, five at 1920; its two
# buttons are words without icons so they fit side by side in it
BRUSH, RECTANGLE = "Brush", "Rectangle"
DRAWN_KEY = "drawn_objects"  # (query key, the canvas's objects): what was drawn, to put back after another page
RESTORED_KEY = "restored_objects"  # the objects the canvas was reopened with (None: the seed region's, if any)
FIGURES_KEY, PICKER_KEY = common.FIGURES_KEY, common.PICKER_KEY


def choose_query(query: QueryImage) -> None:
    st.session_state["query"] = query
    st.session_state["seed_region"] = None
    st.session_state[RESTORED_KEY] = None


def search_from(match: Match, grid: int) -> None:
    """Make the match's image the query, with its matched window as the region."""
    choose_query(QueryImage.from_dataset(match.path))
    # a match found at another size has its window on its level's grid: its pixel box is the region
    st.session_state["seed_region"] = window_region(match, grid) if match.scale == 1.0 else Region.from_box(match.box)


def choose_random(paths: list[str]) -> None:
    choose_query(QueryImage.from_dataset(random.choice(paths)))


def clear_drawing() -> None:
    # A new initial drawing empties the canvas in place (a new key would rebuild it, and a stroke
    # begun while it loads would be lost). Its reply comes a moment later, so until then the
    # drawing on record is the one just cleared: remember it to ignore it.
    st.session_state["clears"] = st.session_state.get("clears", 0) + 1
    st.session_state["cleared_drawing"] = st.session_state.get("shown_drawing")
    st.session_state["seed_region"] = None
    st.session_state[RESTORED_KEY] = None
    st.session_state[DRAWN_KEY] = (None, [])


def take_upload() -> None:
    upload = st.session_state.get("upload")
    st.session_state["upload_error"] = None
    if upload is None:
        return
    try:
        limits = common.config().uploads
        query = load_upload(upload.name, upload.getvalue(), limits.max_mb, limits.max_pixels)
    except ImageError as exc:
        st.session_state["upload_error"] = str(exc)
        return
    query, st.session_state["upload_unshared"] = keep_upload(query, common.config().upload_store)
    choose_query(query)


def ensure_query(current: Selection, paths: list[str]) -> QueryImage:
    """The link's query on a session's first run; otherwise keep the query while it still exists."""
    if st.session_state.pop("link_query_pending", False):
        shared = st.session_state["link"]
        app = common.config()
        query, problems = link_query(shared, paths, current.root, app.upload_store, app.uploads)
        for problem in problems:
            common.report_link_problem(str(problem))
        if query is not None:
            choose_query(query)
            st.session_state["seed_region"] = shared.region
            st.session_state["query_root"] = current.root
    query = st.session_state.get("query")
    stale = query is None or (query.dataset_path is not None and (
        st.session_state.get("query_root") != current.root or query.dataset_path not in paths))
    if stale:
        choose_query(QueryImage.from_dataset(paths[0]))
        st.session_state["query_root"] = current.root
    return st.session_state["query"]


def cache_ready(current: Selection, paths: list[str]) -> bool:
    """Whether the selection can be searched; starts, shows or offers the index build otherwise."""
    state, images = current.cache_state(len(paths))
    job = common.index_jobs().get(current.cache_path)
    running = job is not None and job.state is JobState.RUNNING
    read_only = common.config().read_only
    if running:
        common.build_progress((current.cache_path,), "page")
    if state is not CacheState.MISSING and images > 0:
        if state is CacheState.OUT_OF_DATE and not running:
            st.warning(f"The feature cache holds {images:,} of the dataset's {len(paths):,} images.")
            if not read_only:
                st.button("Update the index", on_click=common.start_build, args=(current,))
        return True
    if running:
        st.info(f"Indexing {len(paths):,} images for the first time. Other caches stay usable meanwhile: "
                "change the layer or dataset in the sidebar.")
    elif read_only:
        st.error(f"There is no feature cache for {as_markdown_text(current.describe())}, and this deployment is "
                 f"read-only. {common.how_to_build(current)}")
    elif job is not None and job.state is JobState.FAILED:
        st.error(f"Indexing failed: {as_markdown_text(job.error)}")
        st.button("Try again", on_click=common.start_build, args=(current,))
    elif job is not None and job.state is JobState.CANCELLED:
        st.warning("Indexing was cancelled before any image was stored (a batch in flight is still stored).")
        st.button("Resume indexing", on_click=common.start_build, args=(current,))
    elif (cost := common.missing_cache_cost(current, len(paths))).quick:
        common.start_build(current)
        st.rerun()
    else:
        st.info(f"This layer and grid have no feature cache yet. Building it indexes {cost.describe()}; other "
                "caches stay usable meanwhile. Cached layers and grids are marked in the sidebar.")
        st.button("Build this cache", type="primary", on_click=common.start_build, args=(current,))
    return False


def query_picker(current: Selection, paths: list[str], query: QueryImage) -> None:
    # its thumbnails are made and sent only while it is open: a page (or a link) opens without fetching them. The
    # label stays the same (the query's name is under the canvas), so choosing an image does not close it.
    picker = st.expander("Query image: choose another from the dataset, or upload one", key=PICKER_KEY,
                         on_change="rerun")
    if not picker.open:
        return
    with picker:
        from_dataset, from_upload = st.tabs(["From the dataset", "Upload an image"])
        with from_dataset:
            matching = filter_paths(paths, st.session_state.get("picker_filter", ""))
            _, pages = page_of(matching, 1, PICKER_PER_PAGE)
            st.session_state["picker_page"] = min(st.session_state.get("picker_page", 1), pages)
            filter_column, page_column, random_column = st.columns([4, 2, 2], vertical_alignment="bottom")
            filter_column.text_input("Filter by file name", key="picker_filter", placeholder="e.g. dog or n021")
            page = page_column.number_input(f"Page (of {pages})", min_value=1, max_value=pages, key="picker_page")
            random_column.button("Random image", on_click=choose_random, args=(paths,))
            shown, _ = page_of(matching, int(page), PICKER_PER_PAGE)
            if not shown:
                st.info("No image name contains that text.")
            columns = st.columns(PICKER_COLUMNS)
            for position, path in enumerate(shown):
                with columns[position % PICKER_COLUMNS]:
                    st.image(common.preview_jpeg(str(current.root / path), 160), caption=as_markdown_text(path))
                    st.button("Use", key=f"use:{path}", on_click=choose_query, args=(QueryImage.from_dataset(path),))
        with from_upload:
            max_mb = common.config().uploads.max_mb
            st.file_uploader(f"An image of at most {max_mb} MB", key="upload", on_change=take_upload,
                             type=sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS),
                             max_upload_size=max_mb)
            if st.session_state.get("upload_error"):
                st.error(as_markdown_text(st.session_state["upload_error"]))
            if st.session_state.get("upload_unshared"):
                st.caption(f"Links will not name this upload: {as_markdown_text(st.session_state['upload_unshared'])}")
            elif common.config().upload_store.writable:
                st.caption("An upload is kept on this server, so the page's address can name it in a link.")


def searched(search: FeatureSearch, current: Selection, query: QueryImage, region: Region, top_k: int,
             exclude: bool, approximate: bool, scales: tuple[float, ...] = (1.0,),
             region_alone: bool = False) -> ShownSearch:
    """Run the search unless the same one ran last."""
    key = (str(current.cache_path), manifest_token(current.cache_path), query.key, region.token, exclude, approximate,
           scales, region_alone, top_k)
    last: ShownSearch | None = st.session_state.get("last_search")
    if last is not None and last.key == key:
        return last
    outcome = run_search(search, current.root, query, region, top_k, exclude, approximate, scales, region_alone)
    matches = outcome.result.matches
    # a change of k or of exclude-query keeps most matches: their thumbnails are reused (and, the same bytes, are
    # the same media URL, which the browser has already loaded)
    thumbnails = thumbnails_of(matches, [] if last is None else zip(last.outcome.result.matches, last.thumbnails),
                               lambda m: (m.path, tuple(m.box)),
                               lambda missing: match_jpegs([(current.root / m.path, m.box) for m in missing],
                                                           THUMBNAIL_SIDE))
    shown = ShownSearch(key, outcome, st.session_state.get("searches", 0) + 1, thumbnails)
    st.session_state["searches"] = shown.number
    st.session_state["last_search"] = shown
    return shown


def show_scaled_match(current: Selection, search: FeatureSearch, rank: int, match: Match) -> None:
    """A match found at another size: its window is on its pyramid level's grid, so the base grid's heatmap and
    unit explanations do not apply; the pixel box does."""
    picture, full_size = load_preview(current.root / match.path, 720)
    st.image(jpeg_bytes(match_picture(picture, match.box, full_size)), caption="Best window", width="stretch")
    x0, y0, x1, y1 = match.box
    st.markdown(f"**{rank}. {as_markdown_text(match.path)}** · label "
                f"{as_markdown_text(search.label_name(match.label) or '—')} · score **{match.score:.4f}** · "
                f"found at {as_markdown_text(scale_caption(match.scale))}  \n"
                f"pixels ({x0:.0f}, {y0:.0f}) to ({x1:.0f}, {y1:.0f}) of {full_size[0]}×{full_size[1]}")
    st.caption("The heatmap of every window position and the unit explanations are for matches at the size "
               "drawn; this one was found on another size's grid.")
    if st.button("Search from this image", key="dialog-requery", help="Its matched box becomes the region"):
        search_from(match, current.grid)
        st.rerun()


@st.dialog("Match", width="large")
def show_match(current: Selection, search: FeatureSearch, outcome: SearchOutcome, rank: int, match: Match) -> None:
    from app_pages.shared import units_panel  # the dialog's explanations (attribution, units) live there

    if match.scale != 1.0:
        show_scaled_match(current, search, rank, match)
        return
    scores = window_heatmap(search, current.root, outcome.query, outcome.region, match.index, outcome.region_alone)
    picture, full_size = load_preview(current.root / match.path, 720)
    best, heat, why = st.columns(3)
    best.image(jpeg_bytes(match_picture(picture, match.box, full_size)), caption="Best window", width="stretch")
    heat.image(jpeg_bytes(heatmap_picture(picture, scores, outcome.result.window_shape, current.grid, match.box,
                                          full_size)), width="stretch",
               caption=f"Every window position, from {scores.min():.3f} (dark) to {scores.max():.3f} (bright)")
    with why:
        units_panel.why_this_match(current, search, outcome, match, picture, full_size)
    top, left, height, width = match.window
    x0, y0, x1, y1 = match.box
    st.markdown(f"**{rank}. {as_markdown_text(match.path)}** · label "
                f"{as_markdown_text(search.label_name(match.label) or '—')} · score **{match.score:.4f}**  \n"
                f"window: {height}×{width} cells at row {top}, column {left} · "
                f"pixels ({x0:.0f}, {y0:.0f}) to ({x1:.0f}, {y1:.0f}) of {full_size[0]}×{full_size[1]}")
    units_panel.top_units(current, search, outcome, match)
    if st.button("Search from this image", key="dialog-requery", help="Its matched window becomes the region"):
        search_from(match, current.grid)
        st.rerun()


def gallery(current: Selection, search: FeatureSearch, shown: ShownSearch) -> None:
    matches = shown.outcome.result.matches
    # a fixed key lets the browser update the thumbnails in place instead of rebuilding them
    with st.container(key="gallery"):
        # fixed-width cards that wrap: as many per row as the space beside (or under) the canvas holds
        cards = st.container(horizontal=True, wrap=True, gap="medium")
        for rank, match in enumerate(matches, 1):
            with cards.container(width=THUMBNAIL_WIDTH, gap="small"):
                size_note = scale_caption(match.scale) if match.scale != 1.0 else None
                caption = thumbnail_caption(rank, match.score, search.label_name(match.label) if match.label else None,
                                            match.path, size_note)
                st.image(shown.thumbnails[rank - 1], width="stretch", caption=as_markdown_text(caption))
                buttons = st.container(horizontal=True, gap="small")
                if buttons.button("Details", key=f"details-{rank}",
                                  help=f"{as_markdown_text(match.path)}: the similarity of every window position "
                                       "in this image, and why it matches"):
                    show_match(current, search, shown.outcome, rank, match)
                if buttons.button("Search it", key=f"requery-{rank}",
                                  help="Search from this image: make it the query, its matched window the region"):
                    search_from(match, current.grid)
                    st.rerun()
        # last in the gallery, so once it shows this search's number every thumbnail above is this search's
        st.caption(as_markdown_text(gallery_caption(
            len(matches), len(search.cache), shown.number, shown.filters, shown.outcome.result.approximate,
            shown.outcome.query.shareable)))


def approximate_toggle(search: FeatureSearch, place: DeltaGenerator) -> bool | None:
    """Offered, and on by default, where it is faster than exact (a large cache with a shortlist:
    ``vfs index --ann``); None when it is not offered. The choice is kept for caches that offer it."""
    problem = approximate_problem(search)
    if problem is not None:
        if st.session_state.pop("link_approximate_pending", False) and st.session_state.get("approximate"):
            place.warning("The link asks for approximate search, which this cache does not offer: "
                          + as_markdown_text(problem))
        return None
    st.session_state.pop("link_approximate_pending", None)
    st.session_state.setdefault("approximate", True)
    return place.toggle("Approximate (shortlist)", key="approximate", persist_state="session",
                        help="Score exactly only the images the shortlist proposes: much faster on very large "
                             "datasets, but an image it misses is not shown.")


@st.fragment
def workspace(current: Selection) -> None:
    """Canvas, controls and results: drawing reruns only this part of the page."""
    search = common.opened_search(current)
    if search is None:
        return
    query: QueryImage = st.session_state["query"]
    background, image_size = common.canvas_background(f"{query.key}@{current.root}", CANVAS_SIDE, query, current.root)
    width, height = canvas_size(image_size, CANVAS_SIDE, CANVAS_SIDE)
    # the canvas keeps its pixel width; the results take the rest of the row, or wrap below it
    row = st.container(horizontal=True, gap="large")
    drawing_column = row.container(width=CANVAS_SIDE, key="drawing_column")  # narrower under 1200 px: layout.css
    results_column = row.container(width="stretch", key="results_column")
    with drawing_column:
        tool_column, width_column = st.columns(2, vertical_alignment="bottom")
        tool = tool_column.radio("Tool", [BRUSH, RECTANGLE], horizontal=True, key="tool")
        brush = width_column.slider("Brush width", 4, 80, 28, key="brush_width", disabled=tool != BRUSH)
        fit = CanvasFit.stretched((width, height), image_size)
        seed: Region | None = st.session_state.get("seed_region")  # a region put on the canvas as objects
        drawn_query, drawn_objects = st.session_state.get(DRAWN_KEY, (None, []))
        if f"canvas:{query.key}" not in st.session_state:
            # back from another page: streamlit dropped the canvas's drawing, so what was drawn (the seed's
            # objects first, when there is a seed) is put back as it was drawn
            st.session_state[RESTORED_KEY] = drawn_objects if drawn_query == query.key else None
        initial_objects = st.session_state.get(RESTORED_KEY) or (
            [] if seed is None else region_objects(seed, fit, image_size))
        drawing = st_canvas(background_image=background, width=width, height=height,
                            drawing_mode="freedraw" if tool == BRUSH else "rect",
                            stroke_width=brush if tool == BRUSH else RECTANGLE_OUTLINE,
                            stroke_color=drawing_colour(STROKE_OPACITY), fill_color=drawing_colour(FILL_OPACITY),
                            key=f"canvas:{query.key}",
                            initial_drawing={"objects": initial_objects, "clears": st.session_state.get("clears", 0)})
        st.session_state["shown_drawing"] = drawing.json_data
        cleared = drawing.json_data == st.session_state.get("cleared_drawing")
        region = None if cleared else drawing_to_region(drawing.json_data, fit, image_size, current.grid, seed)
        if seed is not None and region is None and not cleared:
            # the link's region was deleted from the canvas: forget it, as Clear does
            st.session_state["seed_region"] = seed = None
        objects = (drawing.json_data or {}).get("objects", []) if not cleared else []
        st.session_state[DRAWN_KEY] = (query.key, objects)
        st.session_state["search_region"] = region  # the Compare page searches it across setups
        if region is not None and region != seed:
            st.session_state["link_problems"] = []
        clear_column, caption_column = st.columns([1, 3], vertical_alignment="center")
        clear_column.button("Clear", key="clear", on_click=clear_drawing, width="stretch")
        caption_column.caption(f"{as_markdown_text(query.name)} · {image_size[0]}×{image_size[1]} pixels. Draw over what you look "
                               "for; releasing the mouse searches.")
        with caption_column:
            canvas_companion.attach(f"canvas:{query.key}")
        queries_panel.set_controls(current, query, region, clear_drawing)
        if region is not None:
            displayed = Image.open(io.BytesIO(background))
            st.image(jpeg_bytes(region_picture(displayed, region.grid_weights(image_size, current.grid))), width=220,
                     caption=f"The region on the {current.grid}×{current.grid} feature grid")
    with results_column:
        # side by side while they fit, one under another when the column is narrow, never cut off
        controls = st.container(horizontal=True, wrap=True, gap="small", vertical_alignment="bottom")
        st.session_state.setdefault("top_k", 12)
        top_k = controls.slider("Results (k)", 1, MAX_TOP_K, key="top_k", width=240, persist_state="session")
        exclude = controls.toggle("Exclude the query image", key="exclude_query", width="content", persist_state="session")
        approximate = approximate_toggle(search, controls)
        any_size = queries_panel.size_toggle(controls)
        alone = queries_panel.alone_toggle(controls)
        search_id = results(current, search, query, region, top_k, exclude, approximate, any_size, alone)
        # after the results: a link's mode filter applies to its search once that has run
        common.write_link(current, query, region, top_k, exclude, approximate,
                          st.session_state.get(result_filters.LABELS_KEY), any_size, queries_panel.shared_regions(),
                          result_filters.linked_cluster(current), queries_panel.linked_mode(search_id), alone)


def results(current: Selection, search: FeatureSearch, query: QueryImage, region: Region | None, top_k: int,
            exclude: bool, approximate: bool | None, any_size: bool, alone: bool) -> tuple | None:
    """The region set's results, or the drawn region's: gallery, modes, label consistency and figures. The search
    shown, as its modes know it (what it depends on but its k), or None."""
    scales = queries_panel.search_scales(current, search, any_size)
    set_shown = queries_panel.set_results(current, search, top_k, exclude, scales, alone)
    if set_shown is not None:
        return set_shown or None
    if region is None:
        st.info("Draw on the query image (brush or rectangle) to search.")
        return None
    try:
        shown = searched(search, current, query, region, top_k, exclude, bool(approximate) and scales == (1.0,), scales,
                         alone)
    except VfsError as exc:
        st.error(as_markdown_text(exc))
        return None
    result = shown.outcome.result
    # under the gallery: above it, on a laptop screen, it pushes the first result below the fold
    how_searched = as_markdown_text(describe_search(shown.outcome, len(search.cache))) + fallback_note(result.backend)
    if not result.matches:
        st.info("No image to show (is the query the only image?).")
        st.caption(how_searched)
        return shown.without_k
    queries_panel.take_linked_mode(shown.without_k)
    gallery(current, search, result_filters.gallery_view(current, search, shown, THUMBNAIL_SIDE))
    st.caption(how_searched)
    queries_panel.modes_section(current, search, shown.without_k, result)
    labels_panel.consistency_sentence(search, shown)
    # under the gallery, not the canvas: when the page is too narrow for both side by side (1000 px) the
    # results wrap under the canvas, and the gallery must come before the figures. Built and sent only while
    # open: plotly.js (4.7 MB) and three figures of every image's score cost a stroke or an opened link
    # seconds of the browser's time on a small machine, before the gallery's thumbnails show.
    plots = st.expander("Score distribution and scores per label", key=FIGURES_KEY, on_change="rerun")
    if plots.open:
        with plots:
            if shown.figure is None:
                shown.figure = score_distribution(result.scores, search.cache.paths, search.named_labels,
                                                  result.matches[-1].score)
            st.plotly_chart(shown.figure, key="score_plot", config={"displaylogo": False})
            labels_panel.figures(search, shown)
    return shown.without_k


def page() -> None:
    st.header("Search")
    st.markdown("Draw over part of an image: the gallery shows where this layer of the model sees the same thing "
                "elsewhere in the dataset, best match first.")
    current = common.selection()
    if current is None:
        common.show_link_problems()
        st.info("Choose a dataset folder, a model and a layer in the sidebar.")
        return
    paths = common.dataset_paths(str(current.root))
    if not paths:
        common.show_link_problems()
        st.error(f"No images in {as_markdown_text(display_path(current.root))} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}).")
        return
    query = ensure_query(current, paths)
    queries_panel.take_linked_set(current, paths)
    link_problems = st.empty()  # filled once the link's map filter has been tried too: that needs the cache
    st.caption(as_markdown_text(current.describe()))
    ready = cache_ready(current, paths)
    if ready:
        with contextlib.suppress(VfsError):  # a cache that cannot be opened is reported by the workspace
            result_filters.take_linked_cluster(current, common.feature_search(current))
    with link_problems.container():
        common.show_link_problems()
    if not ready:
        return
    query_picker(current, paths, query)
    workspace(current)


page()
