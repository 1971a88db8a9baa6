"""Units: which channels make a match, and which dataset patches excite a channel most.

In the spirit of Zeiler & Fergus (2014) and OpenAI Microscope, but computed from the feature
cache alone, without running the model.

* :func:`channel_contributions` splits a match's cosine into one term per channel. With the
  mask m cropped to its bounding box, the query grid Q and the window W of the dataset grid
  (both h×w cells), the search's score is ``Σ_c t_c / (‖m⊙Q‖·‖m⊙W‖)`` with
  ``t_c = Σ_cells m²·Q_c·W_c``: each channel's term of the numerator. A channel's *share* is
  ``t_c / Σ t``; shares sum to 1, and a negative share is a channel that works against the match.
* :func:`top_activations` finds, for one channel, the images whose grids hold its largest value
  in any cell (one best cell per image: the "max over grid cells" of a dataset example), streaming
  the memory-mapped shards chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from vfs.cache.feature_cache import FeatureCache
from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch, ImageSource
from vfs.features.geometry import Box, window_to_box
from vfs.similarity.exact import Query
from vfs.similarity.region import Region

#: Bytes of float16 features read per step by :func:`top_activations`.
CHUNK_BYTES = 1 << 24


class UnitError(VfsError):
    """A channel number outside the layer, or a window that does not fit the grid."""


def region_query(search: FeatureSearch, image: ImageSource, region: Region, region_alone: bool = False) -> Query:
    """The query a search of ``region`` on ``image`` runs with (features from the cache for dataset images;
    ``region_alone``: the region's own, as ``FeatureSearch.search(region_alone=True)`` computes them)."""
    features, size = (search.region_alone_features(image, **region.search_arguments(search.grid)) if region_alone
                      else search.query_features(image))
    return Query(features, region.grid_weights(size, search.grid))


def channel_name(layer: str, channel: int) -> str:
    """How a unit is named wherever it is shown: ``blocks.6 #123``."""
    return f"{layer} #{channel}"


@dataclass(frozen=True)
class ChannelContributions:
    """A match's cosine, split by channel (float64 throughout)."""

    terms: np.ndarray  # (C,) each channel's term of the numerator, Σ over window cells of m²·Q_c·W_c
    query_norm: float  # ‖m⊙Q‖
    window_norm: float  # ‖m⊙W‖

    @property
    def numerator(self) -> float:
        return float(self.terms.sum())

    @property
    def score(self) -> float:
        """The cosine as the search defines it: 0 for a window with no features, clamped to [-1, 1]."""
        if self.window_norm == 0.0:
            return 0.0
        return float(np.clip(self.numerator / (self.query_norm * self.window_norm), -1.0, 1.0))

    @cached_property
    def shares(self) -> np.ndarray:
        """(C,) each channel's fraction of the numerator; all zero when the numerator is."""
        numerator = self.numerator
        return self.terms / numerator if numerator != 0.0 else np.zeros_like(self.terms)

    @cached_property
    def cosine_terms(self) -> np.ndarray:
        """(C,) each channel's part of the (unclamped) cosine: they sum to the score."""
        if self.window_norm == 0.0:
            return np.zeros_like(self.terms)
        return self.terms / (self.query_norm * self.window_norm)

    def top(self, n: int) -> np.ndarray:
        """The ``n`` channels with the largest terms, largest first (ties: the lower channel)."""
        order = np.lexsort((np.arange(len(self.terms)), -self.terms))
        return order[:n]


def channel_contributions(query: Query, candidate: np.ndarray,
                          window: tuple[int, int] | tuple[int, int, int, int]) -> ChannelContributions:
    """Per-channel terms of the cosine between ``query``'s weighted region and a window of ``candidate``.

    ``candidate`` is a dataset image's (C, G, G) grid (as cached, float16) and ``window`` its
    (top, left) cell, or a :attr:`vfs.similarity.exact.Match.window` (top, left, height, width), whose
    size must be the query's bounding box.
    """
    candidate = np.asarray(candidate)
    if candidate.shape != query.features.shape:
        raise UnitError(f"Candidate features {candidate.shape} do not match the query's {query.features.shape}.")
    h, w = query.window_shape
    top, left = int(window[0]), int(window[1])
    if len(window) == 4 and tuple(int(v) for v in window[2:]) != (h, w):
        raise UnitError(f"The window is {window[2]}×{window[3]} cells but the query region spans {h}×{w}.")
    grid = candidate.shape[-1]
    if not (0 <= top <= grid - h and 0 <= left <= grid - w):
        raise UnitError(f"A {h}×{w} window at row {top}, column {left} does not fit a {grid}×{grid} grid.")
    q_top, q_left, q_bottom, q_right = query.bounds
    weights = query.weights  # the mask over the bounding box, float64
    region = query.features[:, q_top:q_bottom, q_left:q_right].astype(np.float64)
    cells = candidate[:, top:top + h, left:left + w].astype(np.float64)
    terms = np.einsum("chw,hw,chw->c", region, weights**2, cells)
    query_norm = float(np.sqrt(((region * weights) ** 2).sum()))
    if query_norm == 0.0:
        raise UnitError("The region's features are all zero at this layer; no channel contributes.")
    window_norm = float(np.sqrt(((cells * weights) ** 2).sum()))
    return ChannelContributions(terms, query_norm, window_norm)


@dataclass(frozen=True)
class Exemplar:
    """One dataset image's strongest cell for a channel."""

    index: int  # row of the cache
    path: str
    label: str | None
    activation: float  # the channel's value in that cell of the pooled grid
    cell: tuple[int, int]  # row, column
    box: Box  # the cell in the original image's pixels


def channel_maxima(cache: FeatureCache, channel: int) -> tuple[np.ndarray, np.ndarray]:
    """Every image's largest value of ``channel`` over its grid cells (N,) float32, and that cell's flat index (N,).

    The first maximum wins (ties go to the top-left cell). Reads the memory map chunk by chunk,
    so memory stays bounded whatever the cache's size.
    """
    if not 0 <= channel < cache.channels:
        raise UnitError(f"Channel {channel} does not exist: {cache.spec.layer} has channels 0 to {cache.channels - 1}.")
    n, cells = len(cache), cache.grid * cache.grid
    maxima = np.empty(n, np.float32)
    where = np.empty(n, np.int64)
    rows = max(1, CHUNK_BYTES // (cache.channels * cells * 2))
    for shard in cache.shards:
        for start in range(0, len(shard.features), rows):
            stop = min(start + rows, len(shard.features))
            values = shard.features[start:stop, channel].reshape(stop - start, cells).astype(np.float32)
            best = values.argmax(axis=1)
            maxima[shard.offset + start: shard.offset + stop] = values[np.arange(stop - start), best]
            where[shard.offset + start: shard.offset + stop] = best
    return maxima, where


def top_activations(cache: FeatureCache, channel: int, k: int) -> list[Exemplar]:
    """The ``k`` images where ``channel`` is largest in some grid cell, strongest first.

    One exemplar per image (its best cell), so a photo full of the pattern does not fill the list;
    ties go to the earlier image.
    """
    if k < 1:
        raise UnitError(f"Ask for at least one exemplar, not {k}.")
    maxima, where = channel_maxima(cache, channel)
    values = maxima.astype(np.float64)
    order = np.lexsort((np.arange(len(values)), -values))[:k]
    exemplars = []
    for i in order:
        row, col = divmod(int(where[i]), cache.grid)
        size = (int(cache.image_sizes[i, 0]), int(cache.image_sizes[i, 1]))
        exemplars.append(Exemplar(int(i), cache.paths[i], cache.labels[i], float(maxima[i]), (row, col),
                                  window_to_box(row, col, 1, 1, size, cache.grid)))
    return exemplars
