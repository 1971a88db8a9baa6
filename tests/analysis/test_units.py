"""Units: per-channel contributions to a match's cosine, and a channel's top dataset patches."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.data import write_cache
from vfs.analysis.units import (
    UnitError,
    channel_contributions,
    channel_maxima,
    channel_name,
    top_activations,
)
from vfs.features.geometry import window_to_box
from vfs.similarity.exact import Query, TorchBackend, search


def _query(rng: np.random.Generator, channels: int = 24, grid: int = 7) -> Query:
    features = rng.normal(size=(channels, grid, grid)).astype(np.float16).astype(np.float32)
    mask = np.zeros((grid, grid), np.float32)
    mask[1:4, 2:4] = rng.uniform(0.1, 1.0, size=(3, 2))  # soft weights, a 3×2 bounding box
    mask[2, 2] = 0.0  # a hole inside the box
    return Query(features, mask)


def test_terms_are_the_cosine_numerator_split_by_channel():
    rng = np.random.default_rng(0)
    query = _query(rng)
    candidate = rng.normal(size=query.features.shape).astype(np.float16)
    top, left, bottom, right = query.bounds
    m = query.grid_mask[top:bottom, left:right].astype(np.float64)
    weighted_query = query.features[:, top:bottom, left:right].astype(np.float64) * m
    for y in range(7 - 3 + 1):
        for x in range(7 - 2 + 1):
            window = candidate[:, y:y + 3, x:x + 2].astype(np.float64) * m
            parts = channel_contributions(query, candidate, (y, x))
            expected = (weighted_query * window).sum(axis=(1, 2))  # per channel, by brute force
            np.testing.assert_allclose(parts.terms, expected, rtol=1e-12, atol=1e-12)
            assert parts.numerator == pytest.approx(float((weighted_query * window).sum()), abs=1e-10)
            cosine = (weighted_query * window).sum() / np.linalg.norm(weighted_query) / np.linalg.norm(window)
            assert parts.score == pytest.approx(cosine, abs=1e-12)
            assert parts.cosine_terms.sum() == pytest.approx(parts.score, abs=1e-12)
            assert parts.shares.sum() == pytest.approx(1.0, abs=1e-9)


# the fused kernel (where it builds) and the PyTorch paths
@pytest.mark.parametrize("strategy", [None, *(pytest.param(s, marks=pytest.mark.torch) for s in ("conv", "cells"))])
def test_score_reproduces_the_search_at_every_window(strategy):
    rng = np.random.default_rng(1)
    query = _query(rng)
    candidates = rng.normal(size=(3, *query.features.shape)).astype(np.float16)
    norms = np.einsum("ncij,ncij->nij", candidates.astype(np.float32), candidates.astype(np.float32))
    scores = TorchBackend("cpu", strategy).window_scores(candidates, norms, query)
    for n in range(len(candidates)):
        for y, x in np.ndindex(scores.shape[1:]):
            parts = channel_contributions(query, candidates[n], (y, x))
            assert parts.score == pytest.approx(float(scores[n, y, x]), abs=1e-5)


def test_a_match_of_a_search_is_explained_exactly(tmp_path):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(12, 16, 5, 5)).astype(np.float16)
    cache = write_cache(tmp_path / "cache", features, shard_rows=5)
    mask = np.zeros((5, 5), np.float32)
    mask[0:2, 1:4] = 1.0
    query = Query(cache.features(3).astype(np.float32), mask)
    result = search(cache, query, top_k=12)
    for match in result.matches:
        parts = channel_contributions(query, cache.features(match.index), match.window)
        assert parts.score == pytest.approx(match.score, abs=1e-5)
    itself = next(m for m in result.matches if m.index == 3)
    assert channel_contributions(query, cache.features(3), itself.window).score == pytest.approx(1.0, abs=1e-6)


def test_top_channels_are_ordered_by_their_terms_and_shares_can_be_negative():
    rng = np.random.default_rng(3)
    query = _query(rng)
    parts = channel_contributions(query, rng.normal(size=query.features.shape).astype(np.float16), (0, 0))
    top = parts.top(5)
    assert list(parts.terms[top]) == sorted(parts.terms, reverse=True)[:5]
    assert (parts.shares < 0).any()  # random features: some channels work against the match
    assert channel_name("blocks.6", 123) == "blocks.6 #123"


def test_a_featureless_window_scores_zero_like_the_search():
    rng = np.random.default_rng(4)
    query = _query(rng)
    parts = channel_contributions(query, np.zeros(query.features.shape, np.float16), (0, 0))
    assert parts.score == 0.0 and not parts.cosine_terms.any() and not parts.shares.any()


def test_bad_windows_are_refused():
    rng = np.random.default_rng(5)
    query = _query(rng)
    candidate = rng.normal(size=query.features.shape).astype(np.float16)
    with pytest.raises(UnitError, match="does not fit"):
        channel_contributions(query, candidate, (5, 0))  # a 3-row window from row 5 of 7
    with pytest.raises(UnitError, match="region spans 3×2"):
        channel_contributions(query, candidate, (0, 0, 2, 2))
    with pytest.raises(UnitError, match="do not match"):
        channel_contributions(query, candidate[:4], (0, 0))


def _brute_force(features: np.ndarray, channel: int, k: int) -> list[tuple[int, float, tuple[int, int]]]:
    """Every image's best cell of ``channel``, best images first (ties: earlier image, then top-left cell)."""
    best = []
    for i, grid in enumerate(features[:, channel].astype(np.float32)):
        value = grid.max()
        cell = next((r, c) for r in range(grid.shape[0]) for c in range(grid.shape[1]) if grid[r, c] == value)
        best.append((i, float(value), cell))
    return sorted(best, key=lambda item: (-item[1], item[0]))[:k]


@pytest.mark.parametrize("chunk_bytes", [1 << 24, 3 * 8 * 6 * 6 * 2])  # whole shards, and 3 images per step
def test_top_activations_equal_a_brute_force_scan(tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setattr("vfs.analysis.units.CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(6)
    features = rng.normal(size=(31, 8, 6, 6)).astype(np.float16)
    features[20, 2] = features[4, 2]  # a tie between two images: the earlier wins
    features[9, 2, 1, 1] = features[9, 2, 4, 0] = 9.0  # a tie inside one image: the top-left cell wins
    cache = write_cache(tmp_path / "cache", features, shard_rows=7, sizes=(300, 120))
    for channel in (0, 2, 7):
        for k in (1, 5, 31, 40):
            found = top_activations(cache, channel, k)
            expected = _brute_force(features, channel, k)
            assert [(e.index, e.activation, e.cell) for e in found] == expected
            for exemplar in found:
                assert exemplar.path == cache.paths[exemplar.index]
                assert exemplar.box == window_to_box(*exemplar.cell, 1, 1, (300, 120), 6)
    found = top_activations(cache, 2, 1)
    assert found[0].index == 9 and found[0].cell == (1, 1) and found[0].box == (50.0, 20.0, 100.0, 40.0)


def test_channel_maxima_cover_every_image_once(tmp_path):
    rng = np.random.default_rng(7)
    features = rng.normal(size=(17, 4, 3, 3)).astype(np.float16)
    cache = write_cache(tmp_path / "cache", features, shard_rows=4)
    maxima, where = channel_maxima(cache, 3)
    flat = features[:, 3].reshape(17, 9).astype(np.float32)
    np.testing.assert_array_equal(maxima, flat.max(axis=1))
    np.testing.assert_array_equal(where, flat.argmax(axis=1))


def test_bad_channels_and_counts_are_refused(tmp_path):
    cache = write_cache(tmp_path / "cache", np.ones((3, 4, 2, 2), np.float16))
    with pytest.raises(UnitError, match="channels 0 to 3"):
        top_activations(cache, 4, 3)
    with pytest.raises(UnitError, match="channels 0 to 3"):
        top_activations(cache, -1, 3)
    with pytest.raises(UnitError, match="at least one"):
        top_activations(cache, 0, 0)
