"""The similarity-distribution figure."""

from __future__ import annotations

import numpy as np

from vfs.dashboard.plots import (
    MAX_COLOURED_LABELS,
    NAMES_PER_BIN,
    UNLABELLED,
    precision_figure,
    score_distribution,
    shared_score_range,
)


def histograms(figure):
    return [trace for trace in figure.data if trace.type == "histogram"]


def hover_bar(figure):
    (bar,) = [trace for trace in figure.data if trace.type == "bar"]
    return bar


def test_every_finite_score_is_in_the_histograms():
    scores = np.array([0.1, 0.9, -np.inf, 0.4, 0.4], np.float32)
    figure = score_distribution(scores, ["a/1", "a/2", "b/query", "b/3", "b/4"], ["a", "a", "b", "b", "b"], 0.4)
    plotted = sorted(float(x) for trace in histograms(figure) for x in trace.x)
    assert plotted == sorted(round(float(s), 5) for s in scores[np.isfinite(scores)])


def test_hovering_a_bin_names_its_best_files():
    scores = np.linspace(0.0, 1.0, 30)
    paths = [f"img{i:02d}.jpg" for i in range(30)]
    bar = hover_bar(score_distribution(scores, paths, [None] * 30, bins=2))
    assert list(bar.y) == [15, 15]
    low_bin, high_bin = bar.hovertext
    assert high_bin.startswith("0.500 to 1.000: 15 images")  # the highest score is in the last bin
    assert "img29.jpg (1.000)" in high_bin and "img28.jpg" in high_bin and "img15.jpg" not in high_bin
    assert f"… and {15 - NAMES_PER_BIN} more" in high_bin
    assert "img14.jpg" in low_bin and "img29.jpg" not in low_bin
    assert all(trace.hoverinfo == "skip" for trace in histograms(score_distribution(scores, paths, [None] * 30)))


def test_bin_counts_match_the_histogram_binning():
    rng = np.random.default_rng(3)
    scores = rng.normal(0.3, 0.1, 500)
    figure = score_distribution(scores, [str(i) for i in range(500)], [None] * 500, bins=25)
    (histogram,) = histograms(figure)
    bins = histogram.xbins
    edges = bins.start + bins.size * np.arange(round((bins.end - bins.start) / bins.size) + 1)
    expected, _ = np.histogram(np.asarray(histogram.x), bins=edges)
    bar = hover_bar(figure)
    centres = np.asarray(bar.x)
    assert sum(bar.y) == 500
    np.testing.assert_array_equal(np.asarray(bar.y), expected[np.round((centres - bins.start) / bins.size - 0.5)
                                                                .astype(int)])


def test_labels_colour_the_stacked_histograms():
    figure = score_distribution(np.array([0.1, 0.2, 0.3]), ["x", "y", "z"], ["cat", None, "cat"])
    assert sorted(trace.name for trace in histograms(figure)) == sorted(["cat", UNLABELLED])
    assert len({trace.marker.color for trace in histograms(figure)}) == 2
    assert figure.layout.showlegend and figure.layout.barmode == "stack"


def test_one_colour_without_labels_or_with_too_many():
    assert len(histograms(score_distribution(np.arange(5.0), list("abcde"), [None] * 5))) == 1
    many = [f"class{i}" for i in range(MAX_COLOURED_LABELS + 1)]
    figure = score_distribution(np.arange(len(many), dtype=float), many, many)
    assert len(histograms(figure)) == 1 and not figure.layout.showlegend


def test_cutoff_is_drawn_as_a_line():
    figure = score_distribution(np.array([0.2, 0.5, 0.7]), ["a", "b", "c"], [None] * 3, cutoff=0.5)
    (line,) = figure.layout.shapes
    assert line.x0 == line.x1 == 0.5
    assert "cut-off" in figure.layout.annotations[0].text
    assert not score_distribution(np.array([0.2]), ["a"], [None]).layout.shapes


def above_the_plot(annotation) -> bool:
    return annotation.yref == "paper" and annotation.y >= 1 and annotation.yanchor == "bottom"


def test_the_cutoff_note_sits_above_the_plot_and_the_legend_below_it():
    scores = np.array([0.1, 0.2, 0.5, 0.7, 0.9])
    figure = score_distribution(scores, list("abcde"), ["cat", "dog", "cat", "dog", "cat"], cutoff=0.7)
    (note,) = figure.layout.annotations
    assert above_the_plot(note) and "0.700" in note.text
    assert note.xanchor == "right"  # in the right half it runs leftwards, so it stays inside the figure
    assert figure.layout.margin.t >= 30  # the band the note sits in
    assert figure.layout.showlegend and figure.layout.legend.y < 0 and figure.layout.legend.yanchor == "top"
    low = score_distribution(scores, list("abcde"), [None] * 5, cutoff=0.2)
    assert low.layout.annotations[0].xanchor == "left"


def test_the_k_note_is_above_the_precision_curve():
    figure = precision_figure(np.linspace(1.0, 0.3, 50), 0.1, "dress", 12)
    k_note = next(a for a in figure.layout.annotations if a.text == "k = 12")
    assert above_the_plot(k_note) and k_note.xanchor == "left"


def test_distributions_side_by_side_can_share_one_score_axis():
    first, second = np.array([0.1, 0.4, -np.inf]), np.array([0.3, 0.8])
    low, high = shared_score_range([first, second])
    assert low < 0.1 and high > 0.8
    for scores in (first, second):
        figure = score_distribution(scores, [str(i) for i in range(len(scores))], [None] * len(scores),
                                    x_range=(low, high))
        assert tuple(figure.layout.xaxis.range) == (low, high)
    assert shared_score_range([np.array([-np.inf])]) == (0.0, 1.0)
