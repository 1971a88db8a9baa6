"""Feature caches page: the feature caches on disk, building new ones, deleting old ones."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.shared import common
from vfs.cache.catalog import delete_cache, format_bytes, list_caches, read_cache
from vfs.dashboard.demo import DEMO_DIR
from vfs.dashboard.indexing_jobs import JobState
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.searching import approximate_problem, shortlist_problem
from vfs.dashboard.selection import Selection, display_path
from vfs.errors import CacheError, VfsError


def ask_to_delete(path: Path | None) -> None:
    st.session_state["delete_pending"] = path


def confirm_delete(cache_dir: Path, path: Path) -> None:
    st.session_state["delete_pending"] = None
    try:
        delete_cache(cache_dir, path)
        common.index_jobs().forget(path)
        st.session_state["delete_message"] = f"Deleted {path.name}."
    except (CacheError, OSError) as exc:
        st.session_state["delete_message"] = f"Could not delete {path.name}: {exc}"


def shortlist(current: Selection, read_only: bool) -> None:
    """The approximate first stage of the selected cache: its state, and a button that builds it."""
    if read_cache(current.cache_path) is None:
        return
    search = common.opened_search(current)
    if search is None:
        return
    problem = shortlist_problem(search)
    if problem is None:
        unoffered = approximate_problem(search)
        st.caption("Shortlist ready: " + ("the Search page offers approximate search." if unoffered is None else
                                          f"the Search page does not offer approximate search: {as_markdown_text(unoffered)}"))
        return
    st.caption(f"Approximate search: {as_markdown_text(problem)}")
    if read_only or not st.button("Build the shortlist", help="Pooled window descriptors in FAISS: searches then "
                                  "score only the images it proposes. Worth it for very large datasets; it takes "
                                  "about 6 minutes per million images on 2 cores."):
        return
    try:
        with st.spinner(f"Building the shortlist of {len(search.cache):,} images…"):
            search.build_shortlist()
    except VfsError as exc:
        st.error(f"Could not build the shortlist: {as_markdown_text(exc)}")
        return
    st.rerun()


def page() -> None:
    app = common.config()
    current = common.selection()
    st.header("Feature caches")
    where = "" if app.deployment is not None else f"In {as_markdown_text(display_path(app.cache_dir))}. "
    st.caption(f"{where}A cache holds one layer's pooled features for one dataset; the search page builds the one "
               "it needs.")
    if app.read_only:
        st.info("This deployment is read-only: caches can be listed but not built or deleted.")

    st.subheader("Build")
    if current is None:
        st.info("Choose a dataset, model and layer in the sidebar to build their cache.")
    else:
        job = common.index_jobs().get(current.cache_path)
        running = job is not None and job.state is JobState.RUNNING
        st.markdown(f"Sidebar selection: **{as_markdown_text(current.describe())}**")
        st.button("Build or update this cache", on_click=common.start_build, args=(current,),
                  disabled=app.read_only or running, type="primary")
        if running:
            common.build_progress((current.cache_path,), "index")
        elif job is not None and job.summary is not None:
            summary = job.summary
            state = "cancelled" if job.state is JobState.CANCELLED else "finished"
            st.caption(f"Last build {state}: {summary.indexed:,} indexed, {summary.unchanged:,} unchanged, "
                       f"{len(summary.skipped):,} skipped, {summary.images:,} in the cache, {summary.seconds:.1f} s.")
        elif job is not None and job.stopping:
            st.caption("Cancelled: the images of the batch in flight are being stored, then the build stops.")
        elif job is not None and job.error:
            st.error(f"Last build failed: {as_markdown_text(job.error)}")
        if not running:
            shortlist(current, app.read_only)

    st.subheader("On disk")
    message = st.session_state.pop("delete_message", None)
    if message:
        st.info(as_markdown_text(message))
    known = [DEMO_DIR.resolve()] + ([current.root] if current is not None else []) + (
        [app.data.resolve()] if app.data is not None else [])
    caches = list_caches(app.cache_dir, known)
    if not caches:
        st.info("No feature caches yet.")
        return
    served = app.deployment.datasets if app.deployment is not None else None

    def dataset(name: str) -> str:  # a deployment names only the datasets it serves: other paths stay private
        return name if served is None or served.contains(Path(name).resolve()) else "(not served here)"

    st.dataframe([{"model": c.model, "layer": c.layer, "grid": f"{c.grid}×{c.grid}", "dataset": dataset(c.dataset),
                   "images": c.images, "size": format_bytes(c.bytes), "created": c.created.strftime("%Y-%m-%d %H:%M"),
                   "in use": current is not None and c.path == current.cache_path} for c in caches],
                 hide_index=True, width="stretch")
    if app.read_only:
        return
    st.subheader("Delete")
    by_path = {cache.path: cache for cache in caches}
    chosen = st.selectbox("Cache", list(by_path), key="delete_choice",
                          format_func=lambda path: by_path[path].describe())
    busy = (job := common.index_jobs().get(chosen)) is not None and job.state is JobState.RUNNING
    st.button("Delete…", on_click=ask_to_delete, args=(chosen,), disabled=busy,
              help="It is being built right now." if busy else "Asks before deleting.")
    if st.session_state.get("delete_pending") == chosen:
        st.warning(f"Delete {as_markdown_text(by_path[chosen].describe())}? Searching it again means indexing again.")
        yes, no = st.columns(2)
        yes.button("Yes, delete it", on_click=confirm_delete, args=(app.cache_dir, chosen), type="primary")
        no.button("Keep it", on_click=ask_to_delete, args=(None,))


page()
