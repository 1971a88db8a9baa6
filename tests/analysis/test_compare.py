import numpy as np
import pytest
from scipy import stats

from vfs.analysis.rank_agreement import agreement, spearman, top_k_indices, top_k_jaccard


def test_top_k_orders_by_score_then_index_and_skips_non_finite():
    scores = np.array([0.2, 0.9, -np.inf, 0.9, 0.5, np.nan])
    assert top_k_indices(scores, 3).tolist() == [1, 3, 4]
    assert top_k_indices(scores, 10).tolist() == [1, 3, 4, 0]


def test_top_k_rejects_k_below_one():
    with pytest.raises(ValueError):
        top_k_indices(np.ones(3), 0)


def test_jaccard_of_hand_made_top_sets():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = np.array([5.0, 1.0, 4.0, 3.0, 2.0])  # top-2 {0, 2} vs {0, 1}
    assert top_k_jaccard(a, b, 2) == pytest.approx(1 / 3)
    assert top_k_jaccard(a, a, 2) == 1.0
    assert top_k_jaccard(a, -a, 2) == 0.0


def test_spearman_matches_the_formula_without_ties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    n = len(a)
    expected = 1 - 6 * ((ra - rb) ** 2).sum() / (n * (n**2 - 1))
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, size=80).astype(float)
    b = a + rng.integers(0, 4, size=80)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_of_a_constant_is_undefined():
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_agreement_leaves_out_images_not_scored_in_both():
    a = np.array([0.9, 0.8, -np.inf, 0.1, 0.3])
    b = np.array([0.7, -np.inf, 0.5, 0.2, 0.1])
    result = agreement(a, b, ks=(1, 2))
    kept_a, kept_b = np.array([0.9, 0.1, 0.3]), np.array([0.7, 0.2, 0.1])
    assert result.images == 3
    assert result.spearman == pytest.approx(stats.spearmanr(kept_a, kept_b).statistic)
    assert result.jaccard == {1: 1.0, 2: pytest.approx(1 / 3)}
    assert [name for name, _ in result.rows()] == ["Spearman ρ (all images)", "top-1 Jaccard", "top-2 Jaccard"]


def test_agreement_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        agreement(np.ones(3), np.ones(4))
