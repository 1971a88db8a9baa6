"""The search gallery's filters: by label, and by a cluster chosen on the Dataset map.

A filter does not search again: the search scored every image, so the gallery shows the best k
among the images that pass (:func:`vfs.analysis.subset.top_matches`). The label vote of the unfiltered
top-k is shown beside the label filter. The last top-k is kept for the Dataset map to mark.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import streamlit as st

from app_pages.shared import common
from vfs.analysis.dataset_map import ROOT, DatasetMap
from vfs.analysis.labels import UNLABELLED, describe_vote, label_rows
from vfs.analysis.subset import Subset, top_matches
from vfs.cache.feature_cache import FeatureCache
from vfs.dashboard.gallery import thumbnails_of
from vfs.dashboard.links import MapCluster
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.searching import ShownSearch
from vfs.dashboard.selection import Selection
from vfs.feature_search import FeatureSearch
from vfs.pictures import match_jpegs

SUBSET_KEY = "gallery_subset"  # a Subset chosen on the Dataset map, or None
CLUSTER_KEY = "gallery_cluster"  # (cache path, MapCluster): that Subset as a link names it, on the map it came from
LABELS_KEY = "label_filter"
TOP_K_KEY = "search_top_k"  # (dataset root, paths of the last search's top-k), for the Dataset map
SETTINGS_KEY = "search_settings"  # the last search's (k, exclude query), for the Compare page
DEFAULT_TOP_K = 12
_VIEW_KEY = "filtered_gallery"  # the last filtered view, so reruns that change nothing cost nothing


def choose_subset(subset: Subset | None) -> None:
    st.session_state[SUBSET_KEY] = subset
    st.session_state[CLUSTER_KEY] = None


def choose_cluster(current: Selection, clusters: DatasetMap, chosen: MapCluster) -> None:
    """Make a cluster of the selection's map the gallery's filter (the root clears it)."""
    if chosen.cluster_id == ROOT:
        choose_subset(None)
        return
    choose_subset(clusters.subset(chosen.cluster_id, current.root))
    st.session_state[CLUSTER_KEY] = (str(current.cache_path), chosen)


def linked_cluster(current: Selection) -> MapCluster | None:
    """The map filter as a link names it. The filter (its images) stays through a change of layer, but a link can
    name a cluster only on the map of its own layer and grid: the filter chosen on another one is not in the link."""
    kept = st.session_state.get(CLUSTER_KEY)
    if current_subset(current.root) is None or kept is None or kept[0] != str(current.cache_path):
        return None
    return kept[1]


def take_linked_cluster(current: Selection, search: FeatureSearch) -> None:
    """A link's map filter, once: its cluster on the map of the link's layer and grid, which the Map page then shows."""
    pending: MapCluster | None = st.session_state.pop("link_cluster_pending", None)
    if pending is None:
        return
    clusters = common.dataset_map_of(current, pending.levels, search)
    if pending.cluster_id not in {cluster.id for cluster in clusters.clusters}:
        common.report_link_problem(f"cluster= names cluster {pending.cluster_id}, which the dataset map with "
                                   f"{', '.join(map(str, pending.levels))} clusters does not have.")
        return
    choose_cluster(current, clusters, pending)
    st.session_state["map_top"], st.session_state["map_leaves"] = pending.levels[0], pending.levels[-1]


def current_subset(root: Path) -> Subset | None:
    subset: Subset | None = st.session_state.get(SUBSET_KEY)
    return subset if subset is not None and subset.root == root else None


def last_top_k(root: Path) -> list[str]:
    """The paths of the search page's last top-k, if that search was over ``root``."""
    searched_root, paths = st.session_state.get(TOP_K_KEY, (None, []))
    return paths if searched_root == root else []


def last_settings() -> tuple[int, bool]:
    """The Search page's last k and exclude-query choice (its widgets' state ends when another page shows)."""
    return st.session_state.get(SETTINGS_KEY, (DEFAULT_TOP_K, False))


def label_filter(labels: list[str | None]) -> list[str]:
    """The gallery's label filter (kept in the session and the link); the labels chosen."""
    options = sorted({UNLABELLED if label is None else label for label in labels})
    # labels of a previous dataset are dropped rather than shown as choices that do not exist
    st.session_state[LABELS_KEY] = [name for name in st.session_state.get(LABELS_KEY, []) if name in options]
    return st.multiselect("Show only these labels", options, key=LABELS_KEY, placeholder="All labels", persist_state="session",
                          help="The gallery shows the best matches among the images with these labels.")


def gallery_view(current: Selection, search: FeatureSearch, shown: ShownSearch,
                 thumbnail_side: int) -> ShownSearch:
    """The label vote and the filters; returns ``shown`` (the search page's ShownSearch), filtered.

    Also keeps the search's top-k and settings for the Dataset map and Compare pages.
    """
    matches = shown.outcome.result.matches
    st.session_state[TOP_K_KEY] = (current.root, [match.path for match in matches])
    st.session_state[SETTINGS_KEY] = (int(st.session_state.get("top_k", DEFAULT_TOP_K)),
                                      bool(st.session_state.get("exclude_query", False)))
    cache = search.cache
    allowed = np.ones(len(cache), dtype=bool)
    described = []  # for "No image is …"
    named = []  # for the gallery's caption: "Top 12 of 3,925 images · label: dress"
    subset = current_subset(current.root)
    if subset is not None:
        allowed &= subset.rows(cache)
        described.append(f"in {subset.description}")
        named.append(f"map: {subset.description}")
        note, clear = st.columns([3, 1], vertical_alignment="center")
        note.info(f"Filtered to {as_markdown_text(subset.description)} of the Dataset map: the best matches among its "
                  f"{int(allowed.sum()):,} images.", icon=":material/filter_alt:")
        clear.button("Clear filter", key="clear_subset", icon=":material/filter_alt_off:", on_click=choose_subset,
                     args=(None,))
    chosen: list[str] = []
    if cache.has_labels():
        vote_column, filter_column = st.columns([3, 2], vertical_alignment="bottom")
        with filter_column:
            chosen = label_filter(search.named_labels)
        unfiltered = " (before filtering)" if subset is not None or chosen else ""
        vote_column.markdown(f"**Labels of the top {len(matches)}{unfiltered}:** "
                             f"{as_markdown_text(describe_vote([search.label_name(m.label) for m in matches]))}")
        if chosen:
            allowed &= label_rows(search.named_labels, chosen)
            described.append("labelled " + " or ".join(chosen))
            named.append(("label: " if len(chosen) == 1 else "labels: ") + ", ".join(chosen))
    from app_pages.shared.queries_panel import chosen_mode  # the modes section sits under the gallery

    mode = chosen_mode(search, shown.without_k, shown.outcome.result)
    if mode is not None:
        allowed &= mode[1]
        described.append(mode[0])
        named.append(mode[0])
        st.info(f"Showing only {as_markdown_text(mode[0])} of the top matches (chosen under the gallery).",
                icon=":material/filter_alt:")
    if subset is None and not chosen and mode is None:
        return shown
    view = common.remembered(_VIEW_KEY, (shown.number, subset, tuple(chosen), None if mode is None else mode[0]),
                             lambda: _filtered(current, cache, shown, allowed, thumbnail_side))
    view = dataclasses.replace(view, filters=tuple(named))
    if not view.outcome.result.matches:
        st.info(f"No image is {as_markdown_text(' and '.join(described))}.")
    return view


def _filtered(current: Selection, cache: FeatureCache, shown: ShownSearch, allowed: np.ndarray,
              thumbnail_side: int) -> ShownSearch:
    matches = shown.outcome.result.matches
    kept = top_matches(shown.outcome.result, cache, allowed, len(matches))
    thumbnails = thumbnails_of(kept, zip(matches, shown.thumbnails), lambda m: m.index,
                               lambda missing: match_jpegs([(current.root / m.path, m.box) for m in missing],
                                                           thumbnail_side))
    result = dataclasses.replace(shown.outcome.result, matches=kept)
    return dataclasses.replace(shown, outcome=dataclasses.replace(shown.outcome, result=result), thumbnails=thumbnails)
