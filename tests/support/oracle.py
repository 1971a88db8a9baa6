"""The float64 brute-force search every backend is checked against."""

from __future__ import annotations

import numpy as np


def brute_force(features: np.ndarray, query_features: np.ndarray, grid_mask: np.ndarray):
    """Best cosine and (top, left) per image, looping over windows in row-major order, float64."""
    rows = np.flatnonzero(grid_mask.max(axis=1) > 0)
    cols = np.flatnonzero(grid_mask.max(axis=0) > 0)
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = grid_mask[top:bottom, left:right].astype(np.float64)
    q = query_features[:, top:bottom, left:right].astype(np.float64) * m
    h, w = m.shape
    g = features.shape[-1]
    best_scores, best_windows = [], []
    for image in features.astype(np.float64):
        best, where = -np.inf, None
        for y in range(g - h + 1):
            for x in range(g - w + 1):
                window = image[:, y:y + h, x:x + w] * m
                norm = np.linalg.norm(window)
                score = 0.0 if norm == 0 else float((q * window).sum() / (np.linalg.norm(q) * norm))
                if score > best + 1e-12:
                    best, where = score, (y, x)
        best_scores.append(best)
        best_windows.append(where)
    return np.array(best_scores), np.array(best_windows)
