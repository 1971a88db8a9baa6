"""Dataset map: the sidebar dataset's images in nested clusters, with each cluster's most central images.

Choosing a cluster (a click on the treemap, or the picker) filters the Search page's gallery to
it; the Search page's current top-k are outlined on the map.
"""

from __future__ import annotations

import functools

import streamlit as st

from app_pages.shared import common, result_filters
from vfs.analysis.dataset_map import ROOT, DatasetMap, clicked_cluster
from vfs.dashboard.links import MapCluster
from vfs.dashboard.plots import dataset_treemap
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.selection import CacheState, Selection, display_path

CLUSTER_KEY = "map_cluster"
CHART_KEY = "map_chart"
PREVIEW_SIDE = 160


def image_count(count: int) -> str:
    return f"{count:,} image{'' if count == 1 else 's'}"


def chosen_cluster(current: Selection, clusters: DatasetMap) -> str:
    """The cluster of this map that filters the Search gallery; the root when none does."""
    subset = result_filters.current_subset(current.root)
    return ROOT if subset is None else clusters.cluster_holding_exactly(subset)


def take_click(current: Selection, clusters: DatasetMap, levels: tuple[int, ...]) -> None:
    chosen = clicked_cluster(st.session_state.get(CHART_KEY))
    if chosen is not None and chosen in {cluster.id for cluster in clusters.clusters}:
        result_filters.choose_cluster(current, clusters, MapCluster(levels, chosen))


def take_pick(current: Selection, clusters: DatasetMap, levels: tuple[int, ...]) -> None:
    result_filters.choose_cluster(current, clusters, MapCluster(levels, st.session_state[CLUSTER_KEY]))


def central_images(current: Selection, clusters: DatasetMap, cluster_id: str, count: int, columns: int) -> None:
    cluster = clusters.cluster(cluster_id)
    cells = st.columns(columns)
    for position, row in enumerate(cluster.central[:count]):
        path = clusters.paths[row]
        label = clusters.labels[row]
        cells[position % columns].image(common.preview_jpeg(str(current.root / path), PREVIEW_SIDE), width="stretch",
                                        caption=as_markdown_text(path.rsplit('/', 1)[-1] + (f" · {label}" if label else "")))


def cluster_panel(current: Selection, clusters: DatasetMap, chosen: str) -> None:
    """Beside the treemap: the chosen cluster's central images and labels, or each top cluster's."""
    if chosen == ROOT:
        earlier = result_filters.current_subset(current.root)
        if earlier is not None:  # chosen on a map with other cluster counts
            st.info(f"The Search page's gallery is filtered to {as_markdown_text(earlier.description)} of another map "
                    f"({image_count(len(earlier.paths))}).", icon=":material/filter_alt:")
            st.button("Clear the filter", key="map_clear_earlier", on_click=result_filters.choose_subset,
                      args=(None,))
        st.markdown("**The most central images of each cluster**")
        for cluster in clusters.children(ROOT):
            st.caption(f"{as_markdown_text(cluster.title)} · {image_count(cluster.size)}")
            central_images(current, clusters, cluster.id, 4, 4)
        return
    cluster = clusters.cluster(chosen)
    st.markdown(f"**{as_markdown_text(cluster.title)}** · {image_count(cluster.size)}")
    if cluster.vote:
        st.caption("Labels: " + ", ".join(f"{as_markdown_text(label)} {count}" for label, count in cluster.vote[:6])
                   + (" …" if len(cluster.vote) > 6 else ""))
    central_images(current, clusters, chosen, common.MAP_CENTRAL_IMAGES, 3)
    st.info("The Search page's gallery now shows the best matches among this cluster's images.",
            icon=":material/filter_alt:")
    st.button("Clear the filter", key="map_clear", on_click=result_filters.choose_subset, args=(None,))


def page() -> None:
    current = common.selection()
    st.header("Dataset map")
    if current is None:
        st.info("Choose a dataset folder, a model and a layer in the sidebar.")
        return
    st.caption(f"{as_markdown_text(current.describe())}. Images are grouped by their features at this layer (averaged over the grid; "
               "Ward's hierarchical clustering). Click a cluster, or pick it below, to filter the Search page's "
               "gallery to it; clusters holding the Search page's top-k are outlined in red.")
    state, images = current.cache_state(len(common.dataset_paths(str(current.root))))
    if state is CacheState.MISSING or images == 0:
        st.info(f"There is no feature cache for {as_markdown_text(current.describe())} yet: open the Search or Feature caches page to build it.")
        return
    search = common.opened_search(current)
    if search is None:
        return
    top_column, leaf_column = st.columns(2)
    st.session_state.setdefault("map_top", 6)  # kept across pages; a link's cluster filter sets its map's levels
    st.session_state.setdefault("map_leaves", 24)
    top = top_column.slider("Top-level clusters", 2, 12, key="map_top")
    leaves = leaf_column.slider("Clusters in all, at the second level", 2, 60, key="map_leaves",
                                help="At most this many; no more than the top level means one level only.")
    levels = (top,) if leaves <= top else (top, leaves)
    clusters = common.dataset_map_of(current, levels, search)
    ids = [cluster.id for cluster in clusters.clusters]
    chosen = chosen_cluster(current, clusters)
    st.session_state[CLUSTER_KEY] = chosen  # the filter is the state: the picker follows it from any page
    top_k = clusters.rows_of(result_filters.last_top_k(current.root))
    hits = clusters.hits(top_k) if len(top_k) else {}
    map_column, panel_column = st.columns([3, 2])
    with map_column:
        st.plotly_chart(dataset_treemap(clusters, hits, len(top_k), chosen), key=CHART_KEY,
                        on_select=functools.partial(take_click, current, clusters, levels), selection_mode="points",
                        config={"displaylogo": False})
        st.selectbox("Cluster", ids, key=CLUSTER_KEY, on_change=take_pick, args=(current, clusters, levels),
                     format_func=lambda i: f"{clusters.cluster(i).title} ({image_count(clusters.cluster(i).size)})")
        if len(top_k):
            found = sorted(((n, i) for i, n in hits.items() if n and i != ROOT and i not in
                            {c.parent for c in clusters.clusters}), reverse=True)
            st.caption(f"The Search page's top {len(top_k)} fall in: "
                       + ", ".join(f"{as_markdown_text(clusters.cluster(i).title.split(' · ')[0])} ({n})" for n, i in found))
        else:
            st.caption(f"Search on the Search page to mark its results here ({as_markdown_text(display_path(current.root))}).")
    with panel_column:
        cluster_panel(current, clusters, chosen)


page()
