"""The dashboard's figures: score distributions (per label, per setup), score scatters, label precision,
the dataset map.

Plotly renders a subset of HTML in every text it draws, so names (file, folder, label, setup) pass
through :func:`~vfs.dashboard.safe_text.as_plotly_text` on their way in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from vfs.analysis.dataset_map import ROOT, DatasetMap
from vfs.analysis.labels import UNLABELLED, scores_by_label
from vfs.dashboard.safe_text import as_plotly_text
from vfs.similarity.ranking import top_k_indices

#: With more labels than this, colours stop telling them apart: one colour is used instead.
MAX_COLOURED_LABELS = 20
#: File names listed when hovering over a bin (its best-scoring images).
NAMES_PER_BIN = 8
#: Figures keep their notes (a cut-off, k) in a band above the plot, and legends below it, so neither
#: lies on the data or on each other.
TOP_BAND = 34
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.28, "x": 0, "xanchor": "left"}
_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
            "#9D755D", "#BAB0AC", "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B",
            "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF")


def _groups(labels: Sequence[str | None], keep: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, image indices) per label, or a single group when labels do not help."""
    names = np.array([label if label is not None else UNLABELLED for label in labels], dtype=object)
    distinct = sorted(set(names[keep]))
    if len(distinct) < 2 or len(distinct) > MAX_COLOURED_LABELS:
        return [("images", np.flatnonzero(keep))]
    return [(name, np.flatnonzero(keep & (names == name))) for name in distinct]


def _bin_text(scores: np.ndarray, paths: Sequence[str], members: np.ndarray, low: float, high: float) -> str:
    best = members[np.argsort(-scores[members], kind="stable")][:NAMES_PER_BIN]
    lines = [f"{low:.3f} to {high:.3f}: {len(members)} image{'s' if len(members) != 1 else ''}"]
    lines += [f"{as_plotly_text(paths[i])} ({scores[i]:.3f})" for i in best]
    if len(members) > NAMES_PER_BIN:
        lines.append(f"… and {len(members) - NAMES_PER_BIN} more")
    return "<br>".join(lines)


def _note_above(figure: go.Figure, x: float, text: str, x_range: tuple[float, float]) -> None:
    """``text`` in the band above the plot at ``x``, running away from the nearer edge so it stays inside."""
    low, high = x_range
    right_half = high > low and (x - low) / (high - low) > 0.5
    figure.add_annotation(x=x, y=1, xref="x", yref="paper", yanchor="bottom", xanchor="right" if right_half else "left",
                          text=text, showarrow=False, font={"color": "#D62728", "size": 12})


def score_distribution(scores: np.ndarray, paths: Sequence[str], labels: Sequence[str | None],
                       cutoff: float | None = None, bins: int = 40,
                       x_range: tuple[float, float] | None = None,
                       score_name: str = "best window score (cosine)") -> go.Figure:
    """Histogram of every image's best score, stacked by label, with the ``cutoff`` (k-th score) marked.

    The cut-off's note sits above the plot and the legend below it, so neither covers bars or each
    other. ``x_range`` fixes the score axis, so figures side by side (Compare) read alike.

    Hovering a bin lists its best-scoring file names. Images with a non-finite score (the
    excluded query image) are left out. One SVG point per image would make the figure slow to
    draw for thousands of images, so the names travel as one hover text per bin instead.
    """
    scores = np.asarray(scores, dtype=np.float64).round(5)  # what is sent is what is binned here
    keep = np.isfinite(scores)
    finite = scores[keep]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    # a hair wider than span/bins, so the highest score falls in the last bin rather than one past it
    size = (high - low) / bins * (1 + 1e-6) if high > low else 0.01
    figure = go.Figure()
    groups = _groups(labels, keep)
    for position, (name, indices) in enumerate(groups):
        figure.add_trace(go.Histogram(
            x=scores[indices], name=as_plotly_text(name), marker_color=_PALETTE[position % len(_PALETTE)],
            xbins={"start": low, "end": low + bins * size, "size": size}, hoverinfo="skip"))
    # an invisible bar over each bin carries the hover text, on an axis of its own so it does not stack
    members = np.flatnonzero(keep)
    bin_of = np.floor((scores[members] - low) / size).astype(int)
    occupied = np.unique(bin_of)
    counts = np.array([int((bin_of == b).sum()) for b in occupied])
    figure.add_trace(go.Bar(
        x=low + (occupied + 0.5) * size, y=counts, width=size, yaxis="y2", showlegend=False, name="files",
        marker_color="rgba(0, 0, 0, 0)", hoverinfo="text",
        hovertext=[_bin_text(scores, paths, members[bin_of == b], low + b * size, low + (b + 1) * size)
                   for b in occupied]))
    shown_range = x_range if x_range is not None else (low, low + bins * size)
    if cutoff is not None and np.isfinite(cutoff):
        figure.add_vline(x=cutoff, line={"color": "#D62728", "dash": "dash"})
        _note_above(figure, cutoff, f"top-k cut-off: {cutoff:.3f}", shown_range)
    top = float(counts.max()) * 1.08 if counts.size else 1.0
    legend = len(groups) > 1
    figure.update_layout(
        barmode="stack", height=300 + (60 if legend else 0), hovermode="closest",
        margin={"l": 10, "r": 10, "t": TOP_BAND, "b": 10},
        xaxis={"title": score_name, **({"range": list(x_range)} if x_range is not None else {})},
        yaxis={"title": "images", "range": [0, top]},
        yaxis2={"overlaying": "y", "range": [0, top], "visible": False},
        legend=LEGEND_BELOW, showlegend=legend)
    return figure


def shared_score_range(score_sets: Sequence[np.ndarray]) -> tuple[float, float]:
    """One score axis for several distributions: from the lowest finite score of any to the highest."""
    finite = [values[np.isfinite(values)] for values in map(np.asarray, score_sets)]
    finite = [values for values in finite if values.size]
    if not finite:
        return (0.0, 1.0)
    low, high = min(float(v.min()) for v in finite), max(float(v.max()) for v in finite)
    margin = (high - low) * 0.02 or 0.01
    return (low - margin, high + margin)


#: Scatter plots with more points than this are drawn with WebGL: one SVG element per point gets slow.
SVG_POINTS = 2000


def score_scatter(scores_x: np.ndarray, scores_y: np.ndarray, paths: Sequence[str], name_x: str, name_y: str,
                  top_k: int) -> go.Figure:
    """One point per image: its score in one setup against another; hovering names the file.

    Points are coloured by whether the image is in either setup's top-k (the legend names a setup
    by the first word of its name, e.g. its letter). Images not scored finitely by both (the
    excluded query) are left out.
    """
    x, y = np.asarray(scores_x, dtype=np.float64), np.asarray(scores_y, dtype=np.float64)
    both = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    top_x = set(both[top_k_indices(x[both], top_k)].tolist()) if both.size else set()
    top_y = set(both[top_k_indices(y[both], top_k)].tolist()) if both.size else set()
    name_x, name_y = as_plotly_text(name_x), as_plotly_text(name_y)
    short_x, short_y = name_x.split(" ")[0], name_y.split(" ")[0]
    groups = [  # (legend, images, colour, marker size), the top-k drawn last so they stay on top
        ("neither", set(both.tolist()) - top_x - top_y, "#BAB0AC", 6),
        (f"top-k of {short_y} only", top_y - top_x, "#4C78A8", 9),
        (f"top-k of {short_x} only", top_x - top_y, "#F58518", 9),
        ("top-k of both", top_x & top_y, "#D62728", 9)]
    trace = go.Scattergl if both.size > SVG_POINTS else go.Scatter
    figure = go.Figure()
    for legend, members, colour, size in groups:
        rows = np.array(sorted(members), dtype=np.int64)
        if rows.size:
            figure.add_trace(trace(
                x=x[rows], y=y[rows], mode="markers", name=legend, hoverinfo="text",
                marker={"color": colour, "size": size, "opacity": 0.8},
                hovertext=[f"{as_plotly_text(paths[i])}<br>{name_x}: {x[i]:.3f}<br>{name_y}: {y[i]:.3f}" for i in rows]))
    figure.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="closest",
                         xaxis={"title": f"{name_x}: best window score"},
                         yaxis={"title": f"{name_y}: best window score"},
                         legend={"orientation": "h", "y": 1.08})
    return figure


def overlaid_distributions(series: Mapping[str, np.ndarray], bins: int = 40) -> go.Figure:
    """Each named score vector's histogram, as a share of its images, overlaid on shared bins.

    For setups over different datasets (of different sizes): where one dataset's scores sit
    against another's.
    """
    finite = {name: np.asarray(values, dtype=np.float64) for name, values in series.items()}
    finite = {name: values[np.isfinite(values)].round(5) for name, values in finite.items()}
    everything = np.concatenate([values for values in finite.values()] + [np.zeros(0)])
    low, high = (float(everything.min()), float(everything.max())) if everything.size else (0.0, 1.0)
    size = (high - low) / bins * (1 + 1e-6) if high > low else 0.01
    figure = go.Figure()
    for position, (name, values) in enumerate(finite.items()):
        figure.add_trace(go.Histogram(
            x=values, name=f"{as_plotly_text(name)} ({len(values):,} images)", histnorm="percent", opacity=0.55,
            marker_color=_PALETTE[position % len(_PALETTE)], xbins={"start": low, "end": low + bins * size, "size": size},
            hovertemplate="%{x}: %{y:.1f}% of the images<extra></extra>"))
    figure.update_layout(barmode="overlay", height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         xaxis={"title": "best window score (cosine)"}, yaxis={"title": "% of the dataset's images"},
                         legend={"orientation": "h", "y": 1.12})
    return figure


#: Per-label box or violin plots show at most this many labels: those with the highest median score.
MAX_BOX_LABELS = 20
BOX, VIOLIN = "box", "violin"


def label_distribution(scores: np.ndarray, paths: Sequence[str], labels: Sequence[str | None], kind: str = BOX,
                       highlight: str | None = None, max_labels: int = MAX_BOX_LABELS) -> go.Figure:
    """Every image's best score as one box (or violin) per label, highest median on top.

    ``highlight`` (the query's own label) is drawn in red. With more than ``max_labels`` labels
    only those with the highest medians are drawn (and the highlighted one); the title says so.
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = scores_by_label(scores, labels)
    order = sorted(groups, key=lambda name: (-float(np.median(groups[name])), name))
    shown = order[:max_labels] + ([highlight] if highlight in order[max_labels:] else [])
    names = np.array([UNLABELLED if label is None else label for label in labels], dtype=object)
    finite = np.isfinite(scores)
    figure = go.Figure()
    for name in reversed(shown):  # plotly stacks categories bottom-up
        rows = np.flatnonzero(finite & (names == name))
        colour = "#D62728" if name == highlight else "#4C78A8"
        common = {"x": scores[rows], "name": as_plotly_text(name), "orientation": "h", "marker_color": colour,
                  "text": [as_plotly_text(paths[i]) for i in rows], "hoverinfo": "x+text", "showlegend": False}
        if kind == VIOLIN:
            figure.add_trace(go.Violin(**common, points="outliers", box_visible=True, meanline_visible=False,
                                       spanmode="hard"))
        elif kind == BOX:
            figure.add_trace(go.Box(**common, boxpoints="outliers"))
        else:
            raise ValueError(f"kind must be {BOX!r} or {VIOLIN!r}, got {kind!r}")
    title = (f"the {max_labels} labels with the highest median score, of {len(order)}"
             if len(order) > max_labels else "")
    figure.update_layout(height=max(220, 36 * len(shown) + 80), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         xaxis={"title": "best window score (cosine)"}, title={"text": title, "font": {"size": 12}})
    return figure


def precision_figure(precision: np.ndarray, base_rate: float, label: str, top_k: int) -> go.Figure:
    """Precision@k of the query's label for k = 1, 2, ..., with chance (the label's share) and k marked."""
    ks = np.arange(1, len(precision) + 1)
    label = as_plotly_text(label)
    figure = go.Figure(go.Scatter(x=ks, y=precision, mode="lines+markers" if len(ks) <= 50 else "lines",
                                  name=f"precision of {label}", line={"color": "#4C78A8"},
                                  meta=label,  # a field, not part of the template: a label may hold %{…}
                                  hovertemplate="top %{x}: %{y:.0%} %{meta}<extra></extra>"))
    figure.add_hline(y=base_rate, line={"color": "#7F7F7F", "dash": "dot"},
                     annotation_text=f"chance ({base_rate:.0%} of the images)", annotation_position="bottom right")
    if top_k <= len(precision):
        figure.add_vline(x=top_k, line={"color": "#D62728", "dash": "dash"})
        _note_above(figure, top_k, f"k = {top_k}", (1, len(precision)))  # above the plot, off the curve
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": TOP_BAND, "b": 10}, showlegend=False,
                         xaxis={"title": "k (results)"}, yaxis={"title": f"share labelled {label}",
                                                                 "range": [0, 1.05], "tickformat": ".0%"})
    return figure


def dataset_treemap(clusters: DatasetMap, hits: Mapping[str, int] | None = None, top_k: int = 0,
                    chosen: str | None = None) -> go.Figure:
    """The map's clusters as nested rectangles sized by their image counts.

    ``hits`` (per cluster id, how many of the current search's top ``top_k`` it holds) outlines
    those clusters in red and says how many; ``chosen`` is outlined in black.
    """
    hits = hits or {}
    top_level = {cluster.id: position for position, cluster in enumerate(clusters.children(ROOT))}
    ids, parents, values, names, texts, colours, line_colours, line_widths = [], [], [], [], [], [], [], []
    for cluster in clusters.clusters:
        ids.append(cluster.id)
        parents.append(cluster.parent)
        values.append(cluster.size)
        names.append(as_plotly_text(cluster.title))
        found = hits.get(cluster.id, 0)
        texts.append(f"{cluster.size:,} image{'s' if cluster.size != 1 else ''}"
                     + (f"<br><b>{found} of the top {top_k}</b>" if found else ""))
        branch = cluster.id.split(".")[0]
        colours.append("#F2F2F2" if cluster.id == ROOT else _PALETTE[top_level.get(branch, 0) % len(_PALETTE)])
        outline = "#000000" if cluster.id == chosen else "#D62728" if found else "#FFFFFF"
        line_colours.append(outline)
        line_widths.append(4 if found or cluster.id == chosen else 1)
    figure = go.Figure(go.Treemap(
        ids=ids, parents=parents, values=values, labels=names, text=texts, branchvalues="total",
        textinfo="label+text", hoverinfo="label+text", maxdepth=3,
        marker={"colors": colours, "line": {"color": line_colours, "width": line_widths}}))
    figure.update_layout(height=520, margin={"l": 4, "r": 4, "t": 30, "b": 4})
    return figure
