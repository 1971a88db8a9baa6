"""The one ranking rule of every search: best score first, ties broken by dataset order.

Exact search, region sets, scales, label filters, agreement statistics and match modes all rank
with :func:`top_k_indices`, so the same scores always give the same order everywhere.
"""

from __future__ import annotations

import numpy as np


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best indices by score (ties: the lower index first); non-finite scores are left out."""
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    if k == 0 or not len(scores):
        return np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(np.isfinite(scores))
    if k < len(candidates):  # a partial sort first; argpartition cuts ties arbitrarily, so widen to every tied score
        cutoff = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        candidates = candidates[scores[candidates] >= cutoff]
    return candidates[np.lexsort((candidates, -scores[candidates]))][:k]
