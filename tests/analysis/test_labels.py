import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from vfs.analysis.labels import UNLABELLED, average_precision, base_rate, precision_at_k, scores_by_label

SCORES = np.array([0.9, 0.1, 0.8, -np.inf, 0.4, 0.7, 0.2])
LABELS = ["dog", "cat", "cat", "dog", None, "dog", "cat"]


def test_precision_at_k_counts_the_target_among_the_best():
    # ranking without the excluded image: 0 dog, 2 cat, 5 dog, 4 None, 6 cat, 1 cat
    assert precision_at_k(SCORES, LABELS, "dog", 1) == 1.0
    assert precision_at_k(SCORES, LABELS, "dog", 3) == pytest.approx(2 / 3)
    assert precision_at_k(SCORES, LABELS, "cat", 3) == pytest.approx(1 / 3)
    assert precision_at_k(SCORES, LABELS, "cat", 100) == pytest.approx(3 / 6)


def test_base_rate_ignores_excluded_images():
    assert base_rate(SCORES, LABELS, "dog") == pytest.approx(2 / 6)


def test_scores_by_label_groups_finite_scores():
    groups = scores_by_label(SCORES, LABELS)
    assert list(groups) == sorted(["dog", "cat", UNLABELLED])
    assert sorted(groups["dog"].tolist()) == [0.7, 0.9]
    assert groups[UNLABELLED].tolist() == [0.4]


def test_average_precision_matches_scikit_learn():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=60)
    labels = [str(v) for v in rng.integers(0, 3, size=60)]
    expected = average_precision_score(np.array(labels) == "1", scores)
    assert average_precision(scores, labels, "1") == pytest.approx(expected)


def test_average_precision_of_an_absent_label_is_undefined():
    assert np.isnan(average_precision(SCORES, LABELS, "bird"))


def test_labels_must_match_scores():
    with pytest.raises(ValueError):
        precision_at_k(SCORES, LABELS[:-1], "dog", 1)


def test_label_consistency_leaves_the_query_out_and_says_when_there_is_none():
    from vfs.analysis.labels import LabelConsistency, label_consistency

    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    labels = ["cat", "cat", "dog", "cat", None]
    found = label_consistency(scores, labels, 0, top_k=2, depth=4)
    assert isinstance(found, LabelConsistency) and found.label == "cat"
    np.testing.assert_allclose(found.precision, [1.0, 0.5, 2 / 3, 0.5])  # ranking 1, 2, 3, 4: the query is out
    assert found.at_k == 0.5 and found.chance == 0.5
    assert "not a labelled image" in label_consistency(scores, labels, 4, 2, 4)
    assert "not a labelled image" in label_consistency(scores, labels, None, 2, 4)
    assert "only image" in label_consistency(scores[:1], labels[:1], 0, 2, 4)
