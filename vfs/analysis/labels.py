"""How a search's scores fall across dataset labels: per-label distributions, label precision, the
top-k's label vote, and which images carry chosen labels (the gallery's label filter).

``scores`` is every image's best score (:attr:`vfs.similarity.exact.SearchResult.scores`) and ``labels``
the cache's labels in the same order (:attr:`vfs.cache.feature_cache.FeatureCache.labels`, the parent folder
names). Images with a non-finite score (the excluded query image) are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from vfs.similarity.ranking import top_k_indices

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


@dataclass(frozen=True)
class LabelConsistency:
    """How far a search's results share the query image's label."""

    label: str
    top_k: int
    precision: np.ndarray  # precision of ``label`` at every k from 1
    chance: float  # the precision of a random ranking

    @property
    def at_k(self) -> float:
        return float(self.precision[min(self.top_k, len(self.precision)) - 1])


def label_consistency(scores: np.ndarray, labels: Sequence[str | None], query_row: int | None, top_k: int,
                      depth: int) -> LabelConsistency | str:
    """Precision of the query image's label down to ``max(depth, top_k)``, the query itself left out;
    or why there is none to show."""
    label = labels[query_row] if query_row is not None else None
    if query_row is None or label is None:
        return "The query is not a labelled image of this dataset, so there is no label precision to show."
    scores = np.array(scores, dtype=np.float64)
    scores[query_row] = -np.inf  # finding the query itself says nothing about its label
    precision = precision_curve(scores, labels, label, max(depth, top_k))
    if not len(precision):
        return "The query is the only image searched, so there is no label precision to show."
    return LabelConsistency(label, top_k, precision, base_rate(scores, labels, label))


def precision_curve(scores: np.ndarray, labels: Sequence[str | None], target: str, max_k: int) -> np.ndarray:
    """Precision of ``target`` at every k from 1 to ``max_k`` (fewer when fewer images are scored)."""
    scores, names = _checked(scores, labels)
    ranked = names[top_k_indices(scores, max_k)] == target
    return np.cumsum(ranked) / np.arange(1, len(ranked) + 1)


def label_vote(labels: Sequence[str | None]) -> list[tuple[str, int]]:
    """How many of ``labels`` (a top-k's) carry each label: most common first, ties by name."""
    counts = Counter(_names(labels).tolist())
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def describe_vote(labels: Sequence[str | None], shown: int = 3) -> str:
    """``"17 of 20 are church, 2 tench, 1 parachute"``: the vote in words, at most ``shown`` labels named."""
    votes = label_vote(labels)
    if not votes:
        return "no results"
    (first, count), rest = votes[0], votes[1:]
    words = [f"{count} of {len(labels)} {'is' if count == 1 else 'are'} {first}"]
    words += [f"{n} {name}" for name, n in rest[: shown - 1]]
    others = sum(n for _, n in rest[shown - 1:])
    if others:
        words.append(f"{others} more")
    return ", ".join(words)


def label_rows(labels: Sequence[str | None], chosen: Collection[str]) -> np.ndarray:
    """Boolean mask of the images whose label (``UNLABELLED`` for none) is among ``chosen``."""
    wanted = set(chosen)
    return np.array([name in wanted for name in _names(labels)], dtype=bool)
