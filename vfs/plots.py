"""The similarity-distribution figure: every image's best score, the top-k cut-off, labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

#: With more labels than this, colours stop telling them apart: one colour is used instead.
MAX_COLOURED_LABELS = 20
#: File names listed when hovering over a bin (its best-scoring images).
NAMES_PER_BIN = 8
_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
            "#9D755D", "#BAB0AC", "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B",
            "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF")
UNLABELLED = "(no label)"


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
    lines += [f"{paths[i]} ({scores[i]:.3f})" for i in best]
    if len(members) > NAMES_PER_BIN:
        lines.append(f"… and {len(members) - NAMES_PER_BIN} more")
    return "<br>".join(lines)


def score_distribution(scores: np.ndarray, paths: Sequence[str], labels: Sequence[str | None],
                       cutoff: float | None = None, bins: int = 40) -> go.Figure:
    """Histogram of every image's best score, stacked by label, with the ``cutoff`` (k-th score) marked.

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
            x=scores[indices], name=name, marker_color=_PALETTE[position % len(_PALETTE)],
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
    if cutoff is not None and np.isfinite(cutoff):
        figure.add_vline(x=cutoff, line={"color": "#D62728", "dash": "dash"}, annotation_text="top-k cut-off",
                         annotation_position="top left")
    top = float(counts.max()) * 1.08 if counts.size else 1.0
    figure.update_layout(
        barmode="stack", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="closest",
        xaxis={"title": "best window score (cosine)"}, yaxis={"title": "images", "range": [0, top]},
        yaxis2={"overlaying": "y", "range": [0, top], "visible": False},
        legend={"orientation": "h", "y": 1.12}, showlegend=len(groups) > 1)
    return figure
