"""Why this match: the score's gradient at the layer, as a map over the result image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vfs.analysis.units import channel_contributions
from vfs.feature_search import FeatureSearch
from vfs.features.images import load_image
from vfs.pictures import attribution_picture
from vfs.similarity.exact import Query


@pytest.fixture(scope="module")
def api(torch):
    """vfs.analysis.attribution, which imports torch: imported here, so that the picture's test runs without it."""
    from vfs.analysis import attribution

    return attribution


@pytest.fixture(scope="module")
def constructed_search(constructed_case, lite0):
    """The constructed dataset's cache (lite0, blocks.6, 7×7), searched from the pasted patch."""
    search = FeatureSearch(constructed_case.data, model=lite0, layer="blocks.6", cache_dir=constructed_case.cache_dir)
    features, size = search.query_features(constructed_case.data / constructed_case.query)
    query = Query(features, search.grid_mask(size, box=constructed_case.patch_box))
    result = search.search(constructed_case.data / constructed_case.query, box=constructed_case.patch_box,
                           top_k=3, exclude_query=True)
    return search, query, result


def _random_query(rng: np.random.Generator) -> Query:
    mask = np.zeros((5, 5), np.float32)
    mask[1:3, 0:3] = rng.uniform(0.2, 1.0, size=(2, 3))
    return Query(rng.normal(size=(6, 5, 5)).astype(np.float32), mask)


def test_window_score_is_the_search_cosine_and_its_gradient_is_exact(api, torch):
    rng = np.random.default_rng(0)
    query = _random_query(rng)
    grid = torch.from_numpy(rng.normal(size=(6, 5, 5))).requires_grad_(True)
    for top, left in ((0, 0), (3, 2), (1, 1)):
        expected = channel_contributions(query, grid.detach().numpy(), (top, left)).score
        assert api.window_score(grid, query, (top, left)).item() == pytest.approx(expected, abs=1e-12)
        assert torch.autograd.gradcheck(lambda g: api.window_score(g, query, (top, left)), (grid,))
    with pytest.raises(api.AttributionError, match="does not fit"):
        api.window_score(grid, query, (4, 0))


def test_the_score_recomputed_with_gradients_is_the_search_score(api, constructed_search, constructed_case):
    search, query, result = constructed_search
    assert result.matches[0].path == constructed_case.target
    for match in result.matches:
        attribution = api.match_attribution(search, query, match)
        # the cache holds float16 grids; the attribution pools the fresh float32 activations
        assert attribution.score == pytest.approx(match.score, abs=2e-3)


def test_the_map_covers_the_image_and_only_the_window_drives_the_score(api, constructed_search, constructed_case):
    search, query, result = constructed_search
    match = result.matches[0]
    attribution = api.match_attribution(search, query, match)
    width, height = Image.open(constructed_case.data / match.path).size
    assert attribution.heatmap.shape == (height, width) and attribution.heatmap.dtype == np.float32
    assert attribution.heatmap.min() >= 0.0 and attribution.heatmap.max() <= 1.0
    assert attribution.upsampled((100, 60)).shape == (60, 100)
    # blocks.6 is 7×7 at the model's input, like the grid: one map position per cell, and the
    # positions outside the matched window cannot change its score
    assert attribution.layer_map.shape == (7, 7) and attribution.layer_map.max() == pytest.approx(1.0)
    top, left, h, w = match.window
    outside = np.ones((7, 7), bool)
    outside[top:top + h, left:left + w] = False
    assert not attribution.layer_map[outside].any()


def test_the_map_changes_with_the_query_region(api, constructed_search, constructed_case):
    search, query, result = constructed_search
    match = result.matches[0]
    image = load_image(constructed_case.data / match.path)
    features, size = search.query_features(constructed_case.data / constructed_case.query)
    elsewhere = Query(features, search.grid_mask(size, box=(256, 0, 448, 192)))  # grass, also 3×3 cells
    assert elsewhere.window_shape == query.window_shape
    patch = api.score_attribution(search.model, search.layer, image, query, match.window)
    grass = api.score_attribution(search.model, search.layer, image, elsewhere, match.window)
    assert abs(patch.score - grass.score) > 0.1
    assert not np.allclose(patch.layer_map, grass.layer_map, atol=0.05)


def test_attribution_is_deterministic_and_every_method_runs(api, constructed_search):
    search, query, result = constructed_search
    match = result.matches[1]
    first = api.match_attribution(search, query, match)
    np.testing.assert_array_equal(first.layer_map, api.match_attribution(search, query, match).layer_map)
    for method in api.ATTRIBUTION_METHODS:
        other = api.match_attribution(search, query, match, method)
        assert other.method == method and other.score == first.score
        assert other.layer_map.shape == (7, 7) and other.layer_map.max() == pytest.approx(1.0)
    with pytest.raises(api.AttributionError, match="Unknown attribution method"):
        api.match_attribution(search, query, match, "saliency")


def test_attribution_runs_inside_inference_mode(api, torch, constructed_search):
    search, query, result = constructed_search
    with torch.inference_mode():  # as a server thread or a notebook might call it
        attribution = api.match_attribution(search, query, result.matches[0])
    assert attribution.layer_map.max() == pytest.approx(1.0)


def test_attribution_picture_tints_in_proportion_to_the_map():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    values = np.zeros((20, 40), np.float32)
    values[:, 20:] = 1.0
    picture = np.asarray(attribution_picture(image, values))
    assert (picture[:, :20] == (10, 200, 30)).all()  # no attribution: the plain image
    assert not (picture[:, 20:] == (10, 200, 30)).all(axis=-1).any()
    with pytest.raises(ValueError, match="does not fit"):
        attribution_picture(image, values.T)
