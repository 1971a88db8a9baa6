"""Under every search of a labelled dataset: how consistent the results are with the query's label,
and every image's score per label (box or violin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vfs.api import FeatureSearch
from vfs.labels import base_rate, precision_curve
from vfs.plots import BOX, VIOLIN, label_distribution, precision_figure

#: The precision curve runs to this many results (or to k, when k is larger).
PRECISION_DEPTH = 50


def _memo(name: str, key: tuple, make: Callable[[], Any]) -> Any:
    """``make()``, kept in the session until ``key`` changes: reruns that change nothing cost nothing."""
    last = st.session_state.get(name)
    if last is None or last[0] != key:
        last = (key, make())
        st.session_state[name] = last
    return last[1]


def _query_row(search: FeatureSearch, shown: Any) -> int | None:
    query = shown.outcome.query
    return search.cache.index_of(query.dataset_path) if query.dataset_path is not None else None


def _consistency(search: FeatureSearch, shown: Any) -> tuple[str, go.Figure | None]:
    """A sentence on the precision of the query's label, and its precision@k figure."""
    cache, result = search.cache, shown.outcome.result
    row = _query_row(search, shown)
    label = cache.labels[row] if row is not None else None
    if row is None or label is None:
        return "The query is not a labelled image of this dataset, so there is no label precision to show.", None
    top_k = len(result.matches)
    scores = result.scores.copy()
    scores[row] = -np.inf  # finding the query itself says nothing about its label
    precision = precision_curve(scores, cache.labels, label, max(PRECISION_DEPTH, top_k))
    if not len(precision):
        return "The query is the only image searched, so there is no label precision to show.", None
    chance = base_rate(scores, cache.labels, label)
    at_k = precision[min(top_k, len(precision)) - 1]
    sentence = (f"**Label consistency:** {at_k:.0%} of the top {top_k} (the query image itself left out) are "
                f"labelled **{label}**, like the query; by chance {chance:.0%} would be.")
    return sentence, precision_figure(precision, chance, label, top_k)


def show(search: FeatureSearch, shown: Any) -> None:
    """The label-consistency figure and the per-label distribution of ``shown`` (the page's ShownSearch)."""
    cache = search.cache
    if not cache.has_labels():
        return
    if shown.outcome.result.approximate:  # only the candidates were scored: per-label figures would mislead
        st.caption("Label consistency and scores per label need every image scored; turn off Approximate to see them.")
        return
    sentence, precision = _memo("label_consistency", (shown.number,), lambda: _consistency(search, shown))
    st.markdown(sentence)
    if precision is not None:
        st.plotly_chart(precision, key="precision_plot", config={"displaylogo": False})
    kind = st.segmented_control("Scores per label", [BOX, VIOLIN], key="label_plot_kind", default=BOX,
                                format_func=str.capitalize) or BOX
    row = _query_row(search, shown)
    highlight = cache.labels[row] if row is not None else None
    per_label = _memo("label_distribution", (shown.number, kind), lambda: label_distribution(
        shown.outcome.result.scores, cache.paths, cache.labels, kind, highlight=highlight))
    st.plotly_chart(per_label, key="label_plot", config={"displaylogo": False})
