"""The modes of a search's matches: planted groups are found, their number chosen by the eigengap, at one scale or
several (each match's window read from its pyramid level)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.support.data import write_cache
from vfs.analysis.match_modes import (
    match_modes,
    region_set_modes,
    set_window_descriptors,
    spectral_modes,
    window_descriptors,
)
from vfs.errors import VfsError
from vfs.similarity.exact import Query, search
from vfs.similarity.ranking import top_k_indices
from vfs.similarity.region_set import RegionQuery, search_region_set
from vfs.similarity.scales import scale_level, search_scales

GRID, CHANNELS = 7, 16


def planted_cache(tmp_path, groups: int, per_group: int = 20, seed: int = 0):
    """Each group's images hold their group's pattern in one 2×2 window (at a random place); elsewhere only
    background channels, which the query does not use. Patterns share channels, so groups overlap in part."""
    rng = np.random.default_rng(seed)
    pattern_channels = CHANNELS - 4  # the last four channels are background
    patterns = []
    for g in range(groups):
        pattern = 0.3 * rng.random((CHANNELS, 2, 2))
        pattern[pattern_channels:] = 0
        pattern[g * 4:(g + 1) * 4] += 1.0
        patterns.append(pattern)
    features, labels = [], []
    for g, pattern in enumerate(patterns):
        for _ in range(per_group):
            image = np.zeros((CHANNELS, GRID, GRID))
            image[pattern_channels:] = np.maximum(rng.standard_normal((4, GRID, GRID)), 0)
            y, x = rng.integers(0, GRID - 1, size=2)
            image[:, y:y + 2, x:x + 2] = pattern * rng.uniform(0.8, 1.2) + 0.1 * rng.random((CHANNELS, 2, 2))
            features.append(image)
            labels.append(f"class{g}")
    cache = write_cache(tmp_path / "c", np.stack(features).astype(np.float16), labels=labels)
    query_grid = np.zeros((CHANNELS, GRID, GRID), np.float32)
    query_grid[:, 2:4, 2:4] = sum(patterns)  # resembles every group's pattern
    mask = np.zeros((GRID, GRID), np.float32)
    mask[2:4, 2:4] = 1
    return cache, search(cache, Query(query_grid, mask), top_k=5)


def test_planted_groups_are_the_modes(tmp_path):
    cache, result = planted_cache(tmp_path, groups=3)
    modes = match_modes(cache, result, n=60)
    assert len(modes) == 3
    assert sorted(mode.size for mode in modes) == [20, 20, 20]
    for mode in modes:
        assert len(mode.labels) == 1 and list(mode.labels.values()) == [20]  # each mode is one planted group
        assert set(mode.exemplars) <= set(mode.members) and len(mode.exemplars) == 5
    as_json = modes[0].to_dict(cache)
    assert as_json["size"] == 20 and len(as_json["exemplars"]) == 5 and sum(as_json["labels"].values()) == 20


def test_one_group_is_one_mode(tmp_path):
    cache, result = planted_cache(tmp_path, groups=1, per_group=40)
    assert [mode.size for mode in match_modes(cache, result, n=40)] == [40]


def test_only_the_top_n_are_clustered(tmp_path):
    cache, result = planted_cache(tmp_path, groups=2)
    top = top_k_indices(result.scores, 10)
    assert list(top) == sorted(range(len(cache)), key=lambda i: (-result.scores[i], i))[:10]
    assert sum(mode.size for mode in match_modes(cache, result, n=10)) == 10


def test_descriptors_are_the_matched_windows(tmp_path):
    cache, result = planted_cache(tmp_path, groups=2)
    images = top_k_indices(result.scores, 4)
    descriptors = window_descriptors(cache, result, images)
    top, left = result.windows[images[0]]
    window = np.asarray(cache.features(int(images[0])))[:, top:top + 2, left:left + 2].astype(np.float32).ravel()
    np.testing.assert_allclose(descriptors[0], window / np.linalg.norm(window), rtol=1e-5)


def test_eigengap_on_block_affinities():
    blocks = np.kron(np.eye(4), np.ones((5, 5)))  # four disconnected groups of five
    assignment = spectral_modes(blocks + 0.01)
    assert len(set(assignment)) == 4
    assert all(len(set(assignment[i * 5:(i + 1) * 5])) == 1 for i in range(4))
    assert list(spectral_modes(np.ones((2, 2)))) == [0, 0]


def planted_levels(tmp_path, per_group: int = 20, seed: int = 1):
    """Two groups, each pattern visible at one pyramid level only: group 0's on the 7×7 base grid, group 1's
    on the 14×14 level of scale 0.5 (whose cache lists the images in another order)."""
    rng = np.random.default_rng(seed)
    pattern_channels = CHANNELS - 4
    patterns = []
    for g in range(2):
        pattern = 0.3 * rng.random((CHANNELS, 2, 2))
        pattern[pattern_channels:] = 0
        pattern[g * 4:(g + 1) * 4] += 1.0
        patterns.append(pattern)

    def background(grid: int) -> np.ndarray:
        image = np.zeros((CHANNELS, grid, grid))
        image[pattern_channels:] = np.maximum(rng.standard_normal((4, grid, grid)), 0)
        return image

    base, fine, labels = [], [], []
    for g, grid in ((0, GRID), (1, 2 * GRID)):
        for _ in range(per_group):
            planted, plain = background(grid), background(3 * GRID - grid)
            y, x = rng.integers(0, grid - 1, size=2)
            planted[:, y:y + 2, x:x + 2] = patterns[g] * rng.uniform(0.8, 1.2) + 0.1 * rng.random((CHANNELS, 2, 2))
            base.append(planted if g == 0 else plain)
            fine.append(plain if g == 0 else planted)
            labels.append(f"class{g}")
    base_cache = write_cache(tmp_path / "base", np.stack(base).astype(np.float16), labels=labels)
    order = rng.permutation(len(fine))
    fine_cache = write_cache(tmp_path / "fine", np.stack(fine)[order].astype(np.float16),
                             labels=[labels[i] for i in order], paths=[base_cache.paths[i] for i in order])
    query_grid = np.zeros((CHANNELS, GRID, GRID), np.float32)
    query_grid[:, 2:4, 2:4] = sum(patterns)
    mask = np.zeros((GRID, GRID), np.float32)
    mask[2:4, 2:4] = 1
    levels = [(scale_level(1.0, (224, 224), GRID), base_cache), (scale_level(0.5, (224, 224), GRID), fine_cache)]
    return base_cache, fine_cache, search_scales(base_cache, levels, Query(query_grid, mask), top_k=5)


def test_multi_scale_descriptors_are_read_from_each_matchs_level(tmp_path):
    base, fine, result = planted_levels(tmp_path)
    images = top_k_indices(result.scores, 40)
    assert set(result.image_scales[images]) == {1.0, 0.5}  # both levels hold matches
    descriptors = window_descriptors(base, result, images, levels={0.5: fine})
    for descriptor, i in zip(descriptors, images):
        source = base if result.image_scales[i] == 1.0 else fine
        row = source.index_of(base.paths[i])
        top, left = result.windows[i]
        window = np.asarray(source.features(row))[:, top:top + 2, left:left + 2].astype(np.float64).ravel()
        np.testing.assert_allclose(descriptor, window / np.linalg.norm(window), rtol=1e-5)


def test_groups_found_at_different_scales_are_the_modes(tmp_path):
    base, fine, result = planted_levels(tmp_path)
    modes = match_modes(base, result, n=40, levels={0.5: fine})
    assert sorted(mode.size for mode in modes) == [20, 20]
    for mode in modes:
        assert len(mode.labels) == 1  # each mode is one planted group, whatever level it was found at
        assert len({float(result.image_scales[i]) for i in mode.members}) == 1


def test_a_multi_scale_result_needs_its_levels(tmp_path):
    base, _, result = planted_levels(tmp_path)
    with pytest.raises(VfsError, match="scale 0.5"):
        match_modes(base, result, n=40)


def planted_pairs(tmp_path, per_group: int = 15, seed: int = 1):
    """Four groups, each image holding one of two patterns A and one of two patterns B (2×2 windows, at random
    places): a region set asking for an A and a B has four modes, each one (A, B) pair."""
    rng = np.random.default_rng(seed)
    patterns = []
    for p in range(4):  # A1, A2, B1, B2: each on its own 3 channels (the last 4 are background)
        pattern = np.zeros((CHANNELS, 2, 2))
        pattern[p * 3:(p + 1) * 3] = 1.0 + 0.3 * rng.random((3, 2, 2))
        patterns.append(pattern)
    features, labels = [], []
    for a in (0, 1):
        for b in (2, 3):
            for _ in range(per_group):
                image = np.zeros((CHANNELS, GRID, GRID))
                image[12:] = np.maximum(rng.standard_normal((4, GRID, GRID)), 0)
                ya, xa = rng.integers(0, 2, size=2)  # A in the top-left quarter, B in the bottom-right one
                yb, xb = rng.integers(4, GRID - 1, size=2)
                image[:, ya:ya + 2, xa:xa + 2] = patterns[a] * rng.uniform(0.8, 1.2)
                image[:, yb:yb + 2, xb:xb + 2] = patterns[b] * rng.uniform(0.8, 1.2)
                features.append(image)
                labels.append(f"A{a + 1}B{b - 1}")
    cache = write_cache(tmp_path / "pairs", np.stack(features).astype(np.float16), labels=labels)
    mask = np.zeros((GRID, GRID), np.float32)
    mask[2:4, 2:4] = 1
    regions = []
    for first, second in ((0, 1), (2, 3)):  # region A resembles both As, region B both Bs
        grid = np.zeros((CHANNELS, GRID, GRID), np.float32)
        grid[:, 2:4, 2:4] = patterns[first] + patterns[second]
        regions.append(RegionQuery(Query(grid, mask)))
    return cache, search_region_set(cache, regions, top_k=5)


def test_a_region_sets_modes_group_its_results_by_every_positive_regions_window(tmp_path):
    cache, result = planted_pairs(tmp_path)
    modes = region_set_modes(cache, result, n=60)
    assert sorted(mode.size for mode in modes) == [15, 15, 15, 15]
    assert all(len(mode.labels) == 1 for mode in modes)  # each mode is one (A, B) pair
    # one region alone sees only its half of the pair: two modes of 30
    assert sorted(mode.size for mode in match_modes(cache, result.regions[0], n=60)) == [30, 30]


def test_a_region_sets_descriptors_are_its_positive_regions_windows_side_by_side(tmp_path):
    cache, result = planted_pairs(tmp_path, per_group=3)
    images = top_k_indices(result.scores, 5)
    descriptors = set_window_descriptors(cache, result, images)
    for descriptor, i in zip(descriptors, images):
        expected = []
        for region in result.regions:
            top, left = region.windows[i]
            window = np.asarray(cache.features(int(i)))[:, top:top + 2, left:left + 2].astype(np.float64).ravel()
            expected.append(window / np.linalg.norm(window) / np.sqrt(2))
        np.testing.assert_allclose(descriptor, np.concatenate(expected), rtol=1e-5)
    negative = dataclasses.replace(result, negative=[False, True])
    np.testing.assert_allclose(set_window_descriptors(cache, negative, images),
                               window_descriptors(cache, result.regions[0], images), rtol=1e-6)
