"""Agreement between two searches over the same images (two models, layers or grids).

Both take every image's best score (:attr:`vfs.similarity.exact.SearchResult.scores`, same image order);
images with a non-finite score in either (the excluded query image) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best images by score, ties broken by the lower index (the order search uses)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.lexsort((finite, -scores[finite]))]
    return order[:k]


def top_k_jaccard(scores_a: np.ndarray, scores_b: np.ndarray, k: int) -> float:
    """|A ∩ B| / |A ∪ B| of the two top-k sets: 1 when both searches pick the same images."""
    a, b = _paired(scores_a, scores_b)
    top_a, top_b = set(top_k_indices(a, k).tolist()), set(top_k_indices(b, k).tolist())
    union = top_a | top_b
    return len(top_a & top_b) / len(union) if union else float("nan")


def spearman(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (ties share their average rank); NaN when either is constant."""
    from scipy import stats  # imported on first use: the dashboard starts without it

    a, b = _paired(scores_a, scores_b)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # undefined; scipy would say so with a warning
    return float(stats.spearmanr(a, b).statistic)


@dataclass(frozen=True)
class Agreement:
    """How far two searches agree: rank correlation over all images, overlap of their top-k."""

    images: int
    spearman: float
    jaccard: dict[int, float]  # k -> top-k Jaccard overlap

    def rows(self) -> list[tuple[str, float]]:
        """(statistic, value) pairs, ready for a table."""
        return [("Spearman ρ (all images)", self.spearman)] + [
            (f"top-{k} Jaccard", value) for k, value in self.jaccard.items()]


def agreement(scores_a: np.ndarray, scores_b: np.ndarray, ks: tuple[int, ...] = (5, 10, 20, 50)) -> Agreement:
    a, b = _paired(scores_a, scores_b)
    return Agreement(len(a), spearman(a, b), {k: top_k_jaccard(a, b, k) for k in ks})


def _paired(scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two score vectors restricted to images scored finitely in both."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Score vectors must be 1-D and of equal length, got {a.shape} and {b.shape}.")
    both = np.isfinite(a) & np.isfinite(b)
    return a[both], b[both]
