"""Region sets (positives and negatives) against a float64 brute force of the documented score."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.data import write_cache
from tests.support.oracle import brute_force
from vfs.analysis.subset import top_set_matches
from vfs.errors import MaskError
from vfs.features.geometry import window_to_box
from vfs.similarity.exact import Query
from vfs.similarity.region_set import RegionQuery, combine_scores, search_region_set

GRID, CHANNELS, IMAGES = 7, 12, 31


def region(rng: np.random.Generator, rows: slice, cols: slice) -> Query:
    mask = np.zeros((GRID, GRID), np.float32)
    mask[rows, cols] = rng.uniform(0.3, 1.0, size=mask[rows, cols].shape)
    return Query(rng.random((CHANNELS, GRID, GRID)).astype(np.float32), mask)


@pytest.fixture
def cache_and_features(tmp_path):
    rng = np.random.default_rng(7)
    features = np.maximum(rng.standard_normal((IMAGES, CHANNELS, GRID, GRID)), 0).astype(np.float16)
    return write_cache(tmp_path / "c", features, shard_rows=6, sizes=(300, 200)), features


@pytest.mark.parametrize("negative", [[False], [False, False], [False, True], [False, False, True, True]])
def test_region_set_equals_brute_force(cache_and_features, negative):
    cache, features = cache_and_features
    rng = np.random.default_rng(len(negative))
    shapes = [(slice(1, 3), slice(2, 5)), (slice(4, 5), slice(0, 1)), (slice(0, 7), slice(0, 7)), (slice(2, 6), slice(3, 4))]
    regions = [RegionQuery(region(rng, *shapes[i]), is_negative) for i, is_negative in enumerate(negative)]
    result = search_region_set(cache, regions, top_k=10, negative_weight=0.7)

    oracle = [brute_force(features, r.query.features, r.query.grid_mask) for r in regions]
    per_region = np.stack([scores for scores, _ in oracle])
    positives = per_region[[not n for n in negative]].mean(axis=0)
    expected = positives - 0.7 * per_region[negative].max(axis=0) if any(negative) else positives
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    ranked = sorted(range(IMAGES), key=lambda i: (-expected[i], i))[:10]
    assert [m.index for m in result.matches] == ranked
    for match in result.matches:
        np.testing.assert_allclose(match.region_scores, per_region[:, match.index], atol=1e-4)
        boxes = [window_to_box(*oracle[r][1][match.index], *regions[r].query.window_shape, (300, 200), GRID)
                 for r in range(len(regions)) if not negative[r]]
        assert match.boxes == boxes  # one box per positive region, in order, where the oracle found it


def test_a_single_positive_is_plain_search(cache_and_features):
    cache, _ = cache_and_features
    query = region(np.random.default_rng(3), slice(2, 4), slice(2, 4))
    from vfs.similarity.exact import search

    single = search(cache, query, top_k=5)
    as_set = search_region_set(cache, [RegionQuery(query)], top_k=5)
    assert [m.index for m in as_set.matches] == [m.index for m in single.matches]
    assert [m.boxes[0] for m in as_set.matches] == [m.box for m in single.matches]


def test_a_negative_pushes_down_what_resembles_it(cache_and_features):
    cache, features = cache_and_features
    query = Query(features[5].astype(np.float32), np.pad(np.ones((2, 2), np.float32), ((1, 4), (1, 4))))
    alone = search_region_set(cache, [RegionQuery(query)], top_k=3)
    assert alone.matches[0].index == 5  # the image the region was taken from
    avoided = search_region_set(cache, [RegionQuery(query), RegionQuery(query, negative=True)], top_k=3)
    assert np.allclose(avoided.scores, 0, atol=1e-5)  # each image is exactly as near the negative as the positive


def test_excluded_images_and_bad_sets(cache_and_features):
    cache, _ = cache_and_features
    query = region(np.random.default_rng(4), slice(0, 2), slice(0, 2))
    result = search_region_set(cache, [RegionQuery(query)], top_k=IMAGES, exclude=[0, 4])
    assert {0, 4}.isdisjoint(m.index for m in result.matches) and len(result.matches) == IMAGES - 2
    with pytest.raises(MaskError, match="at least one positive"):
        search_region_set(cache, [RegionQuery(query, negative=True)])
    with pytest.raises(MaskError, match="at least one region"):
        search_region_set(cache, [])
    with pytest.raises(MaskError):
        combine_scores(np.zeros((1, 3)), [True])


def test_a_sets_best_among_a_subset_equal_searching_only_that_subset(cache_and_features, tmp_path):
    cache, features = cache_and_features
    rng = np.random.default_rng(9)
    regions = [RegionQuery(region(rng, slice(1, 3), slice(2, 5))), RegionQuery(region(rng, slice(4, 6), slice(0, 2))),
               RegionQuery(region(rng, slice(0, 2), slice(0, 3)), negative=True)]
    result = search_region_set(cache, regions, top_k=IMAGES)
    allowed = np.zeros(IMAGES, dtype=bool)
    allowed[::3] = True
    kept = top_set_matches(result, cache, allowed, 5)
    alone = search_region_set(write_cache(tmp_path / "subset", features[allowed], sizes=(300, 200)), regions, top_k=5)
    assert [m.index for m in kept] == [int(np.flatnonzero(allowed)[m.index]) for m in alone.matches]
    for filtered, searched in zip(kept, alone.matches):
        assert filtered.boxes == searched.boxes and filtered.score == pytest.approx(searched.score, abs=1e-6)
        np.testing.assert_allclose(filtered.region_scores, searched.region_scores, atol=1e-6)
    assert [m.index for m in top_set_matches(result, cache, np.ones(IMAGES, bool), 4)] == \
           [m.index for m in result.matches[:4]]
