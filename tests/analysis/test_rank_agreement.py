import numpy as np
import pytest
from scipy import stats

from vfs.analysis.rank_agreement import agreement, spearman, top_k_overlap


def test_jaccard_of_hand_made_top_sets():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = np.array([5.0, 1.0, 4.0, 3.0, 2.0])  # top-2 {0, 2} vs {0, 1}
    assert top_k_overlap(a, b, 2) == (1, pytest.approx(1 / 3))
    assert top_k_overlap(a, a, 2) == (2, 1.0)
    assert top_k_overlap(a, -a, 2) == (0, 0.0)


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


def test_overlap_and_correlation_leave_out_images_not_scored_in_both():
    a = np.array([0.9, 0.8, -np.inf, 0.1, 0.3])
    b = np.array([0.7, -np.inf, 0.5, 0.2, 0.1])
    kept_a, kept_b = np.array([0.9, 0.1, 0.3]), np.array([0.7, 0.2, 0.1])
    assert spearman(a, b) == pytest.approx(stats.spearmanr(kept_a, kept_b).statistic)
    assert top_k_overlap(a, b, 1) == (1, 1.0)
    assert top_k_overlap(a, b, 2) == (1, pytest.approx(1 / 3))


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        spearman(np.ones(3), np.ones(4))


def test_agreement_tabulates_both_on_the_images_scored_in_both():
    a = np.array([0.9, 0.8, -np.inf, 0.1, 0.3])
    b = np.array([0.7, -np.inf, 0.5, 0.2, 0.1])
    result = agreement(a, b, ks=(1, 2))
    assert result.images == 3 and result.spearman == pytest.approx(spearman(a, b))
    assert result.jaccard == {1: 1.0, 2: pytest.approx(1 / 3)}
    assert [name for name, _ in result.rows()] == ["Spearman ρ (all images)", "top-1 Jaccard", "top-2 Jaccard"]
