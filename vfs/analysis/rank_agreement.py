"""Agreement between two searches over the same images (two models, layers or grids).

Both take every image's best score (:attr:`vfs.similarity.exact.SearchResult.scores`, same image order);
images with a non-finite score in either (the excluded query image) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vfs.similarity.ranking import top_k_indices


def top_k_overlap(scores_a: np.ndarray, scores_b: np.ndarray, k: int) -> tuple[int, float]:
    """Images in both top-k sets, and the Jaccard overlap |A ∩ B| / |A ∪ B| (1: the same images; NaN: none)."""
    a, b = _paired(scores_a, scores_b)
    top_a, top_b = set(top_k_indices(a, k).tolist()), set(top_k_indices(b, k).tolist())
    union = top_a | top_b
    return len(top_a & top_b), len(top_a & top_b) / len(union) if union else float("nan")


def spearman(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (ties share their average rank); NaN when either is constant."""
    from scipy import stats  # imported on first use: the dashboard starts without it

    a, b = _paired(scores_a, scores_b)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # undefined; scipy would say so with a warning
    return float(stats.spearmanr(a, b).statistic)


@dataclass(frozen=True)
class Agreement:
    """How far two searches agree, as the notebooks tabulate it: rank correlation, top-k overlaps."""

    images: int
    spearman: float
    jaccard: dict[int, float]  # k -> top-k Jaccard overlap

    def rows(self) -> list[tuple[str, float]]:
        """(statistic, value) pairs, ready for a table."""
        return [("Spearman ρ (all images)", self.spearman)] + [
            (f"top-{k} Jaccard", value) for k, value in self.jaccard.items()]


def agreement(scores_a: np.ndarray, scores_b: np.ndarray, ks: tuple[int, ...] = (5, 10, 20, 50)) -> Agreement:
    a, b = _paired(scores_a, scores_b)
    return Agreement(len(a), spearman(a, b), {k: top_k_overlap(a, b, k)[1] for k in ks})


def _paired(scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two score vectors restricted to images scored finitely in both."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Score vectors must be 1-D and of equal length, got {a.shape} and {b.shape}.")
    both = np.isfinite(a) & np.isfinite(b)
    return a[both], b[both]
