"""Label vote, label precision curve, filtering results by label or subset, and the per-label figures."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.data import write_cache
from vfs.analysis.labels import UNLABELLED, describe_vote, label_rows, label_vote, precision_at_k, precision_curve
from vfs.analysis.subset import Subset, top_matches
from vfs.dashboard.plots import BOX, VIOLIN, label_distribution, precision_figure
from vfs.similarity.exact import Query, search

SCORES = np.array([0.9, 0.1, 0.8, -np.inf, 0.4, 0.7, 0.2])
LABELS = ["dog", "cat", "cat", "dog", None, "dog", "cat"]


def test_precision_curve_is_precision_at_every_k():
    curve = precision_curve(SCORES, LABELS, "dog", 10)
    assert len(curve) == 6  # six images are scored
    expected = [precision_at_k(SCORES, LABELS, "dog", k) for k in range(1, 7)]
    np.testing.assert_allclose(curve, expected)
    np.testing.assert_allclose(precision_curve(SCORES, LABELS, "cat", 3), [0, 1 / 2, 1 / 3])


def test_label_vote_counts_most_common_first_ties_by_name():
    assert label_vote(["church", "tench", "church", None, "tench", "church", "axe"]) == [
        ("church", 3), ("tench", 2), (UNLABELLED, 1), ("axe", 1)]  # "(no label)" sorts before letters
    votes = label_vote(["b", "a", "b", "a", "c"])
    assert votes == [("a", 2), ("b", 2), ("c", 1)]


def test_describe_vote_in_words():
    labels = ["church"] * 17 + ["tench"] * 2 + ["parachute"]
    assert describe_vote(labels) == "17 of 20 are church, 2 tench, 1 parachute"
    assert describe_vote(["a", "b", "c", "d", "d"], shown=2) == "2 of 5 are d, 1 a, 2 more"
    assert describe_vote(["cat"]) == "1 of 1 is cat"
    assert describe_vote([]) == "no results"


def test_label_rows_selects_chosen_labels_including_unlabelled():
    assert label_rows(LABELS, ["cat"]).tolist() == [False, True, True, False, False, False, True]
    assert label_rows(LABELS, [UNLABELLED, "dog"]).tolist() == [True, False, False, True, True, True, False]
    assert not label_rows(LABELS, []).any()


@pytest.fixture
def scored(tmp_path):
    """A small cache with labels and a search over it."""
    rng = np.random.default_rng(5)
    features = rng.normal(size=(23, 8, 5, 5)).astype(np.float16)
    labels = [("a", "b", None)[i % 3] for i in range(23)]
    cache = write_cache(tmp_path / "cache", features, shard_rows=6, sizes=(320, 240), labels=labels)
    mask = np.zeros((5, 5), np.float32)
    mask[1:3, 2:4] = 1.0
    query = Query(rng.normal(size=(8, 5, 5)).astype(np.float32), mask)
    return cache, query


def test_top_matches_over_everything_are_the_search_matches(scored):
    cache, query = scored
    result = search(cache, query, top_k=7)
    assert top_matches(result, cache, np.ones(len(cache), bool), 7) == result.matches


def test_top_matches_of_a_subset_equal_searching_without_the_rest(scored):
    cache, query = scored
    allowed = label_rows(cache.labels, ["a", UNLABELLED])
    full = search(cache, query, top_k=5)
    reference = search(cache, query, top_k=5, exclude=np.flatnonzero(~allowed).tolist())
    assert top_matches(full, cache, allowed, 5) == reference.matches
    assert all(match.label in ("a", None) for match in reference.matches)
    with pytest.raises(ValueError):
        top_matches(full, cache, allowed[:-1], 5)


def test_subset_rows_follow_paths_and_ignore_unknown_ones(scored, tmp_path):
    cache, _ = scored
    subset = Subset(tmp_path, "cluster 1", frozenset({cache.paths[3], cache.paths[10], "gone.png"}))
    assert np.flatnonzero(subset.rows(cache)).tolist() == [3, 10]


def test_label_distribution_one_box_per_label_best_median_on_top():
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.5, -np.inf, 0.4])
    labels = ["low", "low", "high", "high", None, "high", "mid"]
    paths = [f"p{i}.jpg" for i in range(7)]
    figure = label_distribution(scores, paths, labels, BOX, highlight="mid")
    assert [trace.type for trace in figure.data] == ["box"] * 4
    assert [trace.name for trace in figure.data][::-1] == ["high", UNLABELLED, "mid", "low"]  # top first
    high = next(trace for trace in figure.data if trace.name == "high")
    assert sorted(high.x) == [0.8, 0.9] and sorted(high.text) == ["p2.jpg", "p3.jpg"]  # the excluded image is out
    colours = {trace.name: trace.marker.color for trace in figure.data}
    assert colours["mid"] != colours["high"] == colours["low"]
    violin = label_distribution(scores, paths, labels, VIOLIN)
    assert [trace.type for trace in violin.data] == ["violin"] * 4
    with pytest.raises(ValueError):
        label_distribution(scores, paths, labels, "pie")


def test_label_distribution_keeps_the_best_labels_and_the_highlighted_one():
    scores = np.arange(30, dtype=float)
    labels = [f"class{i:02d}" for i in range(30)]
    figure = label_distribution(scores, labels, labels, highlight="class00", max_labels=5)
    names = {trace.name for trace in figure.data}
    assert names == {"class29", "class28", "class27", "class26", "class25", "class00"}
    assert "5 labels" in figure.layout.title.text and "of 30" in figure.layout.title.text


def test_precision_figure_marks_chance_and_k():
    figure = precision_figure(np.array([1.0, 0.5, 2 / 3, 0.5]), 0.25, "dog", 3)
    (curve,) = figure.data
    assert list(curve.x) == [1, 2, 3, 4] and list(curve.y) == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    chance, k = figure.layout.shapes
    assert chance.y0 == chance.y1 == 0.25 and k.x0 == k.x1 == 3
    assert len(precision_figure(np.array([1.0]), 0.5, "dog", 5).layout.shapes) == 1  # k beyond the curve
