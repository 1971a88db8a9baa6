"""One query region searched across several setups side by side: models, layers, grids, datasets.

A :class:`Setup` is a (model, layer, grid, dataset). Every setup searches the same picture and
region: a box stays in the picture's pixels and a grid mask maps onto each setup's grid
(:meth:`vfs.similarity.region.Region.search_arguments`). When the picture is an image of a setup's dataset,
its features come from that setup's cache; otherwise that setup's model computes them, so a
query from one dataset searches another (in-domain against out-of-domain).

Setups over the same dataset are compared image by image, matched by path: the rank correlation
of all their scores and the overlap of their top-k (:mod:`vfs.analysis.rank_agreement`). Setups over different
datasets share no images; their score distributions are compared instead.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfs.analysis.rank_agreement import spearman, top_k_overlap
from vfs.feature_search import FeatureSearch, ImageSource
from vfs.similarity.exact import SearchResult
from vfs.similarity.region import Region

#: Setups side by side: at least two to compare, at most what fits across a page.
MIN_SETUPS, MAX_SETUPS = 2, 4
LETTERS = "ABCD"


@dataclass(frozen=True)
class Setup:
    """What one column of a comparison searches."""

    model: str
    layer: str
    grid: int
    dataset: Path  # resolved

    def describe(self) -> str:
        return f"{self.model} · {self.layer} · {self.grid}×{self.grid} · {self.dataset.name}"

    def same_dataset(self, other: Setup) -> bool:
        return self.dataset == other.dataset


def setup_names(setups: Sequence[Setup]) -> list[str]:
    """A letter per setup and what tells it apart, e.g. ``"A · blocks.5"``, for legends and tables."""
    fields = [(s.model, s.layer, f"{s.grid}×{s.grid}", s.dataset.name) for s in setups]
    varying = [i for i in range(4) if len({f[i] for f in fields}) > 1] or [1]
    return [f"{LETTERS[n]} · " + " · ".join(f[i] for i in varying) for n, f in enumerate(fields)]


@dataclass
class SetupResult:
    setup: Setup
    result: SearchResult
    paths: list[str]  # the setup's cache order, as in ``result.scores``
    labels: list[str | None]  # by readable name, in cache order
    seconds: float  # the query's features and the search


def search_setup(setup: Setup, search: FeatureSearch, picture: ImageSource, region: Region, top_k: int,
                 exclude_query: bool) -> SetupResult:
    """Search ``setup`` (through its ``search``) for ``region`` of ``picture``."""
    started = time.perf_counter()
    result = search.search(picture, top_k=top_k, exclude_query=exclude_query,
                           **region.search_arguments(search.grid))  # type: ignore[arg-type]
    return SetupResult(setup, result, search.cache.paths, search.named_labels, time.perf_counter() - started)


def aligned_scores(a: SetupResult, b: SetupResult) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The paths both setups scored, in ``a``'s order, with each one's scores for them."""
    row_in_b = {path: row for row, path in enumerate(b.paths)}
    pairs = [(row, row_in_b[path]) for row, path in enumerate(a.paths) if path in row_in_b]
    rows_a = np.array([p[0] for p in pairs], dtype=np.int64)
    rows_b = np.array([p[1] for p in pairs], dtype=np.int64)
    return [a.paths[row] for row in rows_a], a.result.scores[rows_a], b.result.scores[rows_b]


@dataclass(frozen=True)
class PairAgreement:
    """How far two setups over the same dataset agree."""

    first: int  # setup positions
    second: int
    images: int  # scored finitely by both
    spearman: float  # rank correlation of every image's score
    k: int
    shared: int  # images in both top-k
    jaccard: float  # |A ∩ B| / |A ∪ B| of the two top-k

    def row(self, names: Sequence[str]) -> dict[str, object]:
        return {"setups": f"{names[self.first]} vs {names[self.second]}", "images": self.images,
                "Spearman ρ": round(self.spearman, 4), f"top-{self.k} shared": self.shared,
                f"top-{self.k} Jaccard": round(self.jaccard, 4)}


def pair_agreement(results: Sequence[SetupResult], first: int, second: int, k: int) -> PairAgreement:
    _, a, b = aligned_scores(results[first], results[second])
    images = int((np.isfinite(a) & np.isfinite(b)).sum())
    shared, jaccard = top_k_overlap(a, b, k)
    return PairAgreement(first, second, images, spearman(a, b), k, shared, jaccard)


def agreements(results: Sequence[SetupResult], k: int) -> list[PairAgreement]:
    """Every pair of setups over the same dataset, in order."""
    return [pair_agreement(results, i, j, k) for i, j in itertools.combinations(range(len(results)), 2)
            if results[i].setup.same_dataset(results[j].setup)]


def spans_datasets(results: Sequence[SetupResult]) -> bool:
    return len({r.setup.dataset for r in results}) > 1
