"""The one ranking rule: best first, ties by dataset order, non-finite scores left out."""

import numpy as np
import pytest

from vfs.similarity.ranking import top_k_indices


def test_top_k_orders_by_score_then_index_and_skips_non_finite():
    scores = np.array([0.2, 0.9, -np.inf, 0.9, 0.5, np.nan])
    assert top_k_indices(scores, 3).tolist() == [1, 3, 4]
    assert top_k_indices(scores, 10).tolist() == [1, 3, 4, 0]
    assert top_k_indices(scores, 0).tolist() == []


def test_ties_at_the_cut_off_go_to_the_lower_index():
    rng = np.random.default_rng(0)
    for _ in range(500):
        scores = rng.integers(0, 4, size=int(rng.integers(1, 30))).astype(float)
        k = int(rng.integers(1, 35))
        expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        assert top_k_indices(scores, k).tolist() == expected


def test_k_below_zero_is_refused():
    with pytest.raises(ValueError):
        top_k_indices(np.ones(3), -1)
