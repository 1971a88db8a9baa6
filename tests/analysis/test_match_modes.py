"""The modes of a search's matches: planted groups are found, their number chosen by the eigengap."""

from __future__ import annotations

import numpy as np

from tests.support.data import write_cache
from vfs.analysis.match_modes import match_modes, spectral_modes, window_descriptors
from vfs.similarity.exact import Query, search
from vfs.similarity.ranking import top_k_indices

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
