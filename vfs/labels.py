"""How a search's scores fall across dataset labels: per-label distributions and label precision.

``scores`` is every image's best score (:attr:`vfs.search.SearchResult.scores`) and ``labels``
the cache's labels in the same order (:attr:`vfs.cache.FeatureCache.labels`, the parent folder
names). Images with a non-finite score (the excluded query image) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vfs.compare import top_k_indices

UNLABELLED = "(no label)"


def _names(labels: Sequence[str | None]) -> np.ndarray:
    return np.array([UNLABELLED if label is None else label for label in labels], dtype=object)


def _checked(scores: np.ndarray, labels: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) != len(labels):
        raise ValueError(f"{len(labels)} labels for scores of shape {scores.shape}.")
    return scores, _names(labels)


def scores_by_label(scores: np.ndarray, labels: Sequence[str | None]) -> dict[str, np.ndarray]:
    """The finite scores of each label's images, labels in sorted order."""
    scores, names = _checked(scores, labels)
    finite = np.isfinite(scores)
    return {name: scores[finite & (names == name)] for name in sorted(set(names[finite]))}


def precision_at_k(scores: np.ndarray, labels: Sequence[str | None], target: str, k: int) -> float:
    """Fraction of the ``k`` best images whose label is ``target`` (of fewer, if fewer are scored)."""
    scores, names = _checked(scores, labels)
    top = top_k_indices(scores, k)
    return float(np.mean(names[top] == target)) if len(top) else float("nan")


def base_rate(scores: np.ndarray, labels: Sequence[str | None], target: str) -> float:
    """Fraction of all scored images labelled ``target``: the precision of a random ranking."""
    scores, names = _checked(scores, labels)
    finite = np.isfinite(scores)
    return float(np.mean(names[finite] == target)) if finite.any() else float("nan")


def average_precision(scores: np.ndarray, labels: Sequence[str | None], target: str) -> float:
    """Mean of the precision at the rank of every ``target`` image, ranking all scored images."""
    scores, names = _checked(scores, labels)
    ranked = names[top_k_indices(scores, max(1, len(scores)))] == target
    if not ranked.any():
        return float("nan")
    precision = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    return float(precision[ranked].mean())
