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


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_run = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    run = np.cumsum(starts_run) - 1
    starts = np.flatnonzero(starts_run)
    ends = np.append(starts[1:], len(values))  # exclusive
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[run]
    return ranks


def spearman(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (Pearson correlation of their average ranks)."""
    a, b = _paired(scores_a, scores_b)
    ranks_a, ranks_b = average_ranks(a) - (len(a) + 1) / 2.0, average_ranks(b) - (len(b) + 1) / 2.0
    denominator = float(np.sqrt((ranks_a**2).sum() * (ranks_b**2).sum()))
    return float((ranks_a * ranks_b).sum() / denominator) if denominator > 0 else float("nan")


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
