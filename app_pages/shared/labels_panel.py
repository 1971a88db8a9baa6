"""Under every search of a labelled dataset: how consistent the results are with the query's label (a sentence,
and its precision@k figure), and every image's score per label (box or violin)."""

from __future__ import annotations

import streamlit as st

from app_pages.shared import common
from vfs.analysis.labels import LabelConsistency, label_consistency
from vfs.dashboard.plots import BOX, VIOLIN, label_distribution, precision_figure
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.searching import ShownSearch
from vfs.feature_search import FeatureSearch

#: The precision curve runs to this many results (or to k, when k is larger).
PRECISION_DEPTH = 50


def _query_row(search: FeatureSearch, shown: ShownSearch) -> int | None:
    query = shown.outcome.query
    return search.cache.index_of(query.dataset_path) if query.dataset_path is not None else None


def _consistency(search: FeatureSearch, shown: ShownSearch) -> LabelConsistency | str:
    """The precision of the query's label among the results (a reason when there is none), computed once per search:
    the sentence shows under every search, its figure only while the figures are open."""
    return common.remembered("label_consistency", (shown.number,), lambda: label_consistency(
        shown.outcome.result.scores, search.named_labels, _query_row(search, shown),
        len(shown.outcome.result.matches), PRECISION_DEPTH))


def consistency_sentence(search: FeatureSearch, shown: ShownSearch) -> None:
    """How consistent ``shown`` (the page's ShownSearch) is with the query's label, in one sentence."""
    if not search.cache.has_labels():
        return
    if shown.outcome.result.approximate:  # only the candidates were scored: per-label figures would mislead
        st.caption("Label consistency and scores per label need every image scored; turn off Approximate to see them.")
        return
    consistency = _consistency(search, shown)
    if isinstance(consistency, str):
        st.markdown(consistency)
        return
    st.markdown(f"**Label consistency:** {consistency.at_k:.0%} of the top {consistency.top_k} (the query image itself "
                f"left out) are labelled **{as_markdown_text(consistency.label)}**, like the query; by chance "
                f"{consistency.chance:.0%} would be.")


def figures(search: FeatureSearch, shown: ShownSearch) -> None:
    """The precision@k figure of the query's label and every image's score per label (box or violin)."""
    cache = search.cache
    if not cache.has_labels() or shown.outcome.result.approximate:
        return
    consistency = _consistency(search, shown)
    if not isinstance(consistency, str):
        precision = common.remembered("precision_figure", (shown.number,), lambda: precision_figure(
            consistency.precision, consistency.chance, consistency.label, consistency.top_k))
        st.plotly_chart(precision, key="precision_plot", config={"displaylogo": False})
    kind = st.segmented_control("Scores per label", [BOX, VIOLIN], key="label_plot_kind", default=BOX,
                                format_func=str.capitalize) or BOX
    row = _query_row(search, shown)
    highlight = search.named_labels[row] if row is not None else None
    per_label = common.remembered("label_distribution", (shown.number, kind), lambda: label_distribution(
        shown.outcome.result.scores, cache.paths, search.named_labels, kind, highlight=highlight))
    st.plotly_chart(per_label, key="label_plot", config={"displaylogo": False})
