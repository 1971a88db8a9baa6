"""The Search page's controls for queries beyond one region at one size (docs/queries.md): the object-size
toggle and its pyramid levels, the region set ("like these, not like that") and the modes of the matches.

Wiring only: the logic is :mod:`vfs.dashboard.queries`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from app_pages.shared import common, result_filters
from vfs.analysis.labels import describe_vote, label_rows
from vfs.analysis.match_modes import MatchMode, describe_mode, exemplar_matches, mode_rows, search_modes
from vfs.analysis.subset import top_set_matches
from vfs.cache.catalog import manifest_token
from vfs.dashboard.gallery import thumbnail_caption, thumbnails_of
from vfs.dashboard.indexing_jobs import JobState
from vfs.dashboard.links import SharedRegion, SharedSearch
from vfs.dashboard.plots import score_distribution
from vfs.dashboard.queries import (
    MODE_MATCHES,
    SET_SCORE_NAME,
    MissingLevel,
    SetOutcome,
    SetRegion,
    add_region,
    describe_set_search,
    explain_set_score,
    match_parts,
    missing_levels,
    modes_problem,
    remove_region,
    run_region_set,
    scale_caption,
    scales_for,
    searches_as_set,
    set_problem,
    total_cost,
)
from vfs.dashboard.query_images import QueryImage, link_query
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.searching import window_heatmap
from vfs.dashboard.selection import Selection
from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch
from vfs.pictures import (
    boxes_jpegs,
    boxes_picture,
    heatmap_picture,
    jpeg_bytes,
    load_preview,
    match_jpegs,
    match_picture,
    set_region_picture,
)
from vfs.similarity.exact import SearchResult
from vfs.similarity.region import Region
from vfs.similarity.region_set import RegionSetMatch, RegionSetResult, set_matches

ANY_SIZE_KEY = "any_size"
REGION_ALONE_KEY = "region_alone"
REGION_SET_KEY = "region_set"
MODE_KEY = "mode_filter"  # (search but its k, mode number from 1) chosen under the gallery
_MODES_KEY = "match_modes"  # (search but its k, modes) found for the last search
_SET_SEARCH_KEY = "last_set_search"
SET_THUMBNAIL_SIDE = 256
SET_CARD_WIDTH = 180  # as the single region's gallery cards


# --- object size --------------------------------------------------------------------------------


def size_toggle(place: st.delta_generator.DeltaGenerator) -> bool:
    return place.toggle("Any object size (½–2×)", key=ANY_SIZE_KEY, persist_state="session",
                        help="Off: objects at the size drawn. On: also half to twice that size, by searching the "
                             "dataset's image-pyramid levels (each is indexed once, when asked). At a late layer "
                             "(7×7) turn on Region alone too: the photo around the region does not change size "
                             "with it.")


def alone_toggle(place: st.delta_generator.DeltaGenerator) -> bool:
    return place.toggle("Region alone", key=REGION_ALONE_KEY, persist_state="session",
                        help="Off: the region's features as its photo shapes them (a late layer's cells see the "
                             "scene around it). On: the region's own, pasted onto a few dataset photos and "
                             "averaged, so the object is found in any scene and at other sizes.")


def _level_builder(level: MissingLevel):  # the IndexJobs build signature: (progress, cancel) -> summary
    return lambda progress, cancel: level.search.index(progress=progress, cancel=cancel)


def start_level_builds(current: Selection, levels: list[MissingLevel]) -> None:
    for level in levels:
        common.index_jobs().start(level.search.cache_path, f"{current.describe()} · size level {level.scale:g}×",
                                  _level_builder(level))


def search_scales(current: Selection, search: FeatureSearch, any_size: bool) -> tuple[float, ...]:
    """The scales to search: every size once its pyramid levels are built; until then the size as drawn, after
    showing what the levels cost with a button that builds them (or their progress)."""
    scales = scales_for(any_size)
    if len(scales) == 1:
        return scales
    images = len(common.dataset_paths(str(current.root)))
    speed = common.model_speed(current.model.name, current.model.fingerprint, current.layer.name, current.grid,
                               current.model)
    try:
        missing = missing_levels(search, scales, images, speed)
    except VfsError as exc:
        st.warning(f"Objects of other sizes cannot be searched: {as_markdown_text(exc)}")
        return (1.0,)
    if not missing:
        return scales
    jobs = [common.index_jobs().get(level.search.cache_path) for level in missing]
    running = [level.search.cache_path for level, job in zip(missing, jobs)
               if job is not None and job.state is JobState.RUNNING]
    if running:
        common.build_progress(tuple(running), "sizes")
        st.caption("Searching at the size drawn until every size level is built.")
        return (1.0,)
    failed = [job.error for job in jobs if job is not None and job.state is JobState.FAILED]
    if failed:
        st.error(f"Building a size level failed: {as_markdown_text(failed[0])}")
    if common.config().read_only:
        st.info("This deployment is read-only and has not built the size levels; searching at the size drawn.")
        return (1.0,)
    cost = total_cost(missing)
    st.info(f"Searching any size needs {len(missing)} image-pyramid levels indexed "
            f"({', '.join(f'{level.scale:g}×' for level in missing)}): {cost.describe()}. "
            "Until then the search is at the size drawn.")
    st.button(f"Build the size levels ({cost.images:,} images, ~{_about(cost.seconds)}, "
              f"{_megabytes(cost.bytes)})", key="build_levels", type="primary", on_click=start_level_builds,
              args=(current, missing))
    return (1.0,)


def _about(seconds: float) -> str:
    from vfs.dashboard.build_cost import about
    return about(seconds)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


# --- region sets --------------------------------------------------------------------------------


def region_set() -> tuple[SetRegion, ...]:
    return st.session_state.get(REGION_SET_KEY, ())


def _add(query: QueryImage, region: Region, negative: bool, clear_canvas: Callable[[], None]) -> None:
    st.session_state[REGION_SET_KEY] = add_region(region_set(), SetRegion(query, region, negative))
    clear_canvas()  # the next drawing is a new region, not this one grown


def _remove(key: str) -> None:
    st.session_state[REGION_SET_KEY] = remove_region(region_set(), key)


def _clear_set() -> None:
    st.session_state[REGION_SET_KEY] = ()


def set_controls(current: Selection, query: QueryImage, region: Region | None,
                 clear_canvas: Callable[[], None]) -> None:
    """Under the canvas: add the drawn region to the query set, and the set's regions, each removable."""
    add_column, negative_column = st.columns(2)
    # the notebook widget's words: short enough for the canvas column at its narrowest (layout.css)
    add_column.button("+ like this", key="add_region", disabled=region is None, width="stretch",
                      on_click=_add, args=(query, region, False, clear_canvas),
                      help="Add this region to the query and draw another: results must resemble every region kept")
    negative_column.button("− not like this", key="add_negative", disabled=region is None,
                           width="stretch", on_click=_add, args=(query, region, True, clear_canvas),
                           help="Add this region to the query as a negative: results resembling it are pushed down")
    regions = region_set()
    if not regions:
        return
    st.markdown(f"**The query's regions** ({len(regions)})")
    columns = st.columns(4)
    for position, kept in enumerate(regions):
        with columns[position % 4]:
            st.image(_set_region_jpeg(current, kept), width="stretch",
                     caption=f"{'not like this' if kept.negative else 'like this'} · "
                             f"{as_markdown_text(kept.query.name.rsplit('/', 1)[-1])}")
            st.button(":material/close:", key=f"remove-region-{position}", on_click=_remove, args=(kept.key,),
                      help="Remove this region from the query")
    st.button("Clear the query's regions", key="clear_region_set", on_click=_clear_set)


def _set_region_jpeg(current: Selection, kept: SetRegion) -> bytes:
    background, size = common.canvas_background(f"{kept.query.key}@{current.root}", 480, kept.query, current.root)
    picture = Image.open(io.BytesIO(background))
    picture.thumbnail((160, 160))
    return jpeg_bytes(set_region_picture(picture, kept.region.grid_weights(size, current.grid), kept.negative))


def set_results(current: Selection, search: FeatureSearch, top_k: int, exclude: bool,
                scales: tuple[float, ...] = (1.0,), region_alone: bool = False) -> tuple | None:
    """When the query set searches as a set, its results (each with every positive region's box), their filters,
    modes, details and score distribution, and the set's search as its modes know it (what it depends on but its
    k; () when none was shown); None when the query is not a set."""
    regions = region_set()
    if not searches_as_set(regions):
        return None
    problem = set_problem(regions)
    if problem is not None:
        st.info(problem)
        return ()
    search_id = ("set", str(current.cache_path), manifest_token(current.cache_path), tuple(r.key for r in regions),
                 exclude, scales, region_alone)
    key = (*search_id, top_k)
    try:
        outcome, thumbnails = common.remembered(_SET_SEARCH_KEY, key,
                                                lambda: _set_search(current, search, regions, top_k, exclude, scales,
                                                                    region_alone))
    except VfsError as exc:
        st.error(as_markdown_text(exc))
        return ()

    def how_searched() -> None:  # under the gallery, as a single region's search says it
        st.caption(as_markdown_text(describe_set_search(outcome, len(search.cache))))
        st.caption("The drawing on the canvas joins the search once added to the query.")

    if not outcome.result.matches:
        st.info("No image to show (are the query's images the only ones?).")
        how_searched()
        return search_id
    take_linked_mode(search_id)
    matches, thumbnails, filters = _filtered_set(current, search, search_id, key, outcome, thumbnails)
    with st.container(key="set_gallery"):
        cards = st.container(horizontal=True, wrap=True, gap="medium")
        for rank, match in enumerate(matches, start=1):
            with cards.container(width=SET_CARD_WIDTH, gap="small"):
                sizes = ", ".join(scale_caption(scale) or "1× size" for scale in match.scales)
                caption = thumbnail_caption(rank, match.score, search.label_name(match.label) if match.label else None,
                                            match.path, sizes if any(scale != 1.0 for scale in match.scales) else None)
                st.image(thumbnails[rank - 1], width="stretch", caption=as_markdown_text(caption))
                if st.button("Details", key=f"set-details-{rank}",
                             help="Where each region of the query was found in this image, and how its score adds up"):
                    show_set_match(current, search, outcome, rank, match)
        filtered = "".join(f" · {as_markdown_text(named)}" for named in filters)
        st.caption(f"Top {len(matches)} of {len(search.cache):,} images for the query's {len(regions)} regions"
                   f"{filtered}")
    how_searched()
    modes_section(current, search, search_id, outcome.result)
    figure = common.remembered("set_score_figure", key, lambda: score_distribution(
        outcome.result.scores, search.cache.paths, search.named_labels, outcome.result.matches[-1].score,
        score_name=SET_SCORE_NAME))
    st.plotly_chart(figure, key="set_score_plot", config={"displaylogo": False})
    return search_id


def _filtered_set(current: Selection, search: FeatureSearch, search_id: tuple, key: tuple, outcome: SetOutcome,
                  thumbnails: list[bytes]) -> tuple[list[RegionSetMatch], list[bytes], tuple[str, ...]]:
    """The label vote and the gallery's filters (labels, a Dataset map cluster, a mode) applied to the set's
    results."""
    matches = outcome.result.matches
    cache = search.cache
    allowed = np.ones(len(cache), dtype=bool)
    named: list[str] = []
    subset = result_filters.current_subset(current.root)
    if subset is not None:
        allowed &= subset.rows(cache)
        named.append(f"map: {subset.description}")
        note, clear = st.columns([3, 1], vertical_alignment="center")
        note.info(f"Filtered to {as_markdown_text(subset.description)} of the Dataset map.",
                  icon=":material/filter_alt:")
        clear.button("Clear filter", key="clear_set_subset", icon=":material/filter_alt_off:",
                     on_click=result_filters.choose_subset, args=(None,))
    chosen: list[str] = []
    if cache.has_labels():
        vote_column, filter_column = st.columns([3, 2], vertical_alignment="bottom")
        with filter_column:
            chosen = result_filters.label_filter(search.named_labels)
        vote_column.markdown(f"**Labels of the top {len(matches)}{' (before filtering)' if chosen else ''}:** "
                             f"{as_markdown_text(describe_vote([search.label_name(m.label) for m in matches]))}")
        if chosen:
            allowed &= label_rows(search.named_labels, chosen)
            named.append(("label: " if len(chosen) == 1 else "labels: ") + ", ".join(chosen))
    mode = chosen_mode(search, search_id, outcome.result)
    if mode is not None:
        allowed &= mode[1]
        named.append(mode[0])
        st.info(f"Showing only {as_markdown_text(mode[0])} of the set's top matches (chosen under the gallery).",
                icon=":material/filter_alt:")
    if subset is None and not chosen and mode is None:
        return matches, thumbnails, ()

    def filtered() -> tuple[list[RegionSetMatch], list[bytes]]:
        kept = top_set_matches(outcome.result, cache, allowed, len(matches))
        return kept, thumbnails_of(kept, zip(matches, thumbnails), lambda m: m.index,
                                   lambda missing: boxes_jpegs([(current.root / m.path, m.boxes) for m in missing],
                                                               SET_THUMBNAIL_SIDE))

    kept, kept_thumbnails = common.remembered("filtered_set_gallery", (key, subset, tuple(chosen),
                                                                      None if mode is None else mode[0]), filtered)
    if not kept:
        st.info("No image of the set's results passes the filters.")
    return kept, kept_thumbnails, tuple(named)


@st.dialog("Match", width="large")
def show_set_match(current: Selection, search: FeatureSearch, outcome: SetOutcome, rank: int,
                   match: RegionSetMatch) -> None:
    """A region set's match: every positive region's window at once, then each region of the set on its own with
    its best window and the score of every window position (as a single region's Details shows)."""
    picture, full_size = load_preview(current.root / match.path, 720)
    overview, summary = st.columns(2, vertical_alignment="center")
    overview.image(jpeg_bytes(boxes_picture(picture, match.boxes, full_size)), width="stretch",
                   caption="Where each region to look for was found")
    summary.markdown(f"**{rank}. {as_markdown_text(match.path)}** · label "
                     f"{as_markdown_text(search.label_name(match.label) or '—')} · score **{match.score:.4f}**  \n"
                     f"{explain_set_score(match, outcome.result.negative, outcome.result.negative_weight)}: the mean "
                     "of the regions to look for"
                     + (", minus the nearest negative" if any(outcome.result.negative) else ""))
    for number, part in enumerate(match_parts(outcome, match, search.cache), start=1):
        sign = "not like this" if part.region.negative else "like this"
        region_column, found_column, heat_column = st.columns(3)
        region_column.image(_set_region_jpeg(current, part.region), width="stretch",
                            caption=f"Region {number}, {sign}: {as_markdown_text(part.region.query.name)}")
        found_at = f", at {scale_caption(part.scale)}" if part.scale != 1.0 else ""
        found_column.image(jpeg_bytes(match_picture(picture, part.box, full_size)), width="stretch",
                           caption=f"Its best window here: {part.score:.3f}{found_at}")
        if part.scale != 1.0:  # its window is on that size's grid: the heatmap of the drawn size does not apply
            heat_column.caption("Found at another size than drawn: the score of every window position is shown for "
                                "matches at the size drawn.")
            continue
        scores = window_heatmap(search, current.root, part.region.query, part.region.region, match.index,
                                outcome.region_alone)
        heat_column.image(jpeg_bytes(heatmap_picture(picture, scores, part.window[2:], current.grid, part.box,
                                                     full_size)), width="stretch",
                          caption=f"Every window position, from {scores.min():.3f} (dark) to {scores.max():.3f} "
                                  "(bright)")


def _set_search(current: Selection, search: FeatureSearch, regions: tuple[SetRegion, ...], top_k: int,
                exclude: bool, scales: tuple[float, ...], region_alone: bool) -> tuple[SetOutcome, list[bytes]]:
    outcome = run_region_set(search, current.root, regions, top_k, exclude, scales, region_alone)
    thumbnails = boxes_jpegs([(current.root / m.path, m.boxes) for m in outcome.result.matches], SET_THUMBNAIL_SIDE)
    return outcome, thumbnails


def shared_regions() -> tuple[SharedRegion, ...] | None:
    """The set as a link names it; regions on an upload not kept on the server are left out."""
    kept = [SharedRegion(r.region, r.negative, r.query.dataset_path, r.query.upload_id)
            for r in region_set() if r.query.shareable]
    return tuple(kept) or None


def take_linked_set(current: Selection, paths: list[str]) -> None:
    """On a session's first run, the link's region set (r=) becomes the query set."""
    if not st.session_state.pop("link_set_pending", False):
        return
    shared: SharedSearch = st.session_state["link"]
    app = common.config()
    regions: list[SetRegion] = []
    for linked in shared.regions or ():
        query, problems = link_query(SharedSearch(query=linked.query, upload=linked.upload), paths, current.root,
                                     app.upload_store, app.uploads)
        for problem in problems:
            common.report_link_problem(str(problem))
        if query is not None:
            regions.append(SetRegion(query, linked.region, linked.negative))
    st.session_state[REGION_SET_KEY] = tuple(regions)


# --- modes --------------------------------------------------------------------------------------


def take_linked_mode(search_id: tuple) -> None:
    """A link's mode filter, once, for the link's search (the first shown)."""
    pending = st.session_state.pop("link_mode_pending", None)
    if pending is not None:
        st.session_state[MODE_KEY] = (search_id, pending)


def linked_mode(search_id: tuple | None) -> int | None:
    """The mode (numbered from 1) the gallery of the search ``search_id`` names is filtered to, as a link names it.
    A search id is what the search depends on but its k (:attr:`ShownSearch.without_k`, or a region set's)."""
    chosen = st.session_state.get(MODE_KEY)
    return chosen[1] if search_id is not None and chosen is not None and chosen[0] == search_id else None


def found_modes(search_id: tuple) -> list[MatchMode] | None:
    """The modes of this search's top matches once found (any k: they group the top MODE_MATCHES), else None."""
    found = st.session_state.get(_MODES_KEY)
    return found[1] if found is not None and found[0] == search_id else None


def chosen_mode(search: FeatureSearch, search_id: tuple,
                result: SearchResult | RegionSetResult) -> tuple[str, np.ndarray] | None:
    """The mode chosen under the gallery of this search, as (description, rows), or None. The choice outlives
    other pages and other layers (back to this search, it applies again): the modes are found again if needed."""
    position = linked_mode(search_id)
    if position is None:
        return None
    modes = found_modes(search_id)
    if modes is None:
        _find_modes(search, search_id, result)
        modes = found_modes(search_id) or []
    if not 1 <= position <= len(modes):
        return None
    return f"in mode {position}", mode_rows(modes[position - 1], len(search.cache))


def _choose_mode(search_id: tuple, position: int | None) -> None:
    st.session_state[MODE_KEY] = None if position is None else (search_id, position)


def _find_modes(search: FeatureSearch, search_id: tuple, result: SearchResult | RegionSetResult) -> None:
    # a multi-size search's windows are read from each match's pyramid level; a set's from each positive region's
    st.session_state[_MODES_KEY] = (search_id, search_modes(search, result, n=MODE_MATCHES))


def modes_section(current: Selection, search: FeatureSearch, search_id: tuple,
                  result: SearchResult | RegionSetResult) -> None:
    """The modes of the top matches: each one's size, label mix and most central matches; one can filter the gallery."""
    modes = found_modes(search_id)
    with st.expander(f"Modes of the top {MODE_MATCHES}", expanded=modes is not None):
        problem = modes_problem(result)
        if problem is not None:
            st.caption(as_markdown_text(problem))
            return
        if modes is None:
            st.caption("Groups the best matches by what their matched windows look like (the wheel of a bicycle "
                       "apart from the face of a clock)"
                       + (", for every region to look for." if isinstance(result, RegionSetResult) else "."))
            st.button("Find the modes", key="find_modes", on_click=_find_modes, args=(search, search_id, result))
            return
        chosen = linked_mode(search_id)
        for position, mode in enumerate(modes, start=1):
            described = as_markdown_text(describe_mode(mode, search.label_name))
            head, choose = st.columns([4, 1], vertical_alignment="center")
            head.markdown(f"**Mode {position}** · {described}")
            if chosen == position:
                choose.button("Show all", key=f"mode-all-{position}", on_click=_choose_mode, args=(search_id, None))
            else:
                choose.button("Show only these", key=f"mode-{position}", on_click=_choose_mode,
                              args=(search_id, position))
            exemplars = _exemplars(current.root, search, mode, result)
            columns = st.columns(max(len(exemplars), 1))
            for column, (picture, path) in zip(columns, exemplars):
                column.image(picture, width="stretch", caption=as_markdown_text(path.rsplit("/", 1)[-1]))


def _exemplars(root: Path, search: FeatureSearch, mode: MatchMode,
               result: SearchResult | RegionSetResult) -> list[tuple[bytes, str]]:
    """The mode's exemplars as (picture with its windows, path): a set's show every positive region's window."""
    if isinstance(result, RegionSetResult):
        found = set_matches(search.cache, result, mode.exemplars)
        boxes = tuple((m.path, tuple(tuple(box) for box in m.boxes)) for m in found)
        return list(zip(_exemplar_set_jpegs(root, boxes), (m.path for m in found)))
    matches = exemplar_matches(mode, result, search.cache)
    return list(zip(_exemplar_jpegs(root, tuple((m.path, tuple(m.box)) for m in matches)), (m.path for m in matches)))


@st.cache_data(max_entries=64, show_spinner=False)
def _exemplar_jpegs(root: Path, matches: tuple[tuple[str, tuple[float, float, float, float]], ...]) -> list[bytes]:
    return match_jpegs([(root / path, box) for path, box in matches], 160)


@st.cache_data(max_entries=64, show_spinner=False)
def _exemplar_set_jpegs(root: Path, matches: tuple[tuple[str, tuple[tuple[float, ...], ...]], ...]) -> list[bytes]:
    return boxes_jpegs([(root / path, list(boxes)) for path, boxes in matches], 160)
