"""One query across several setups: alignment by path, agreement statistics, real searches, figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.support.data import package_photo
from vfs.analysis.rank_agreement import top_k_overlap
from vfs.analysis.setup_comparison import (
    Setup,
    SetupResult,
    agreements,
    aligned_scores,
    pair_agreement,
    search_setup,
    setup_names,
    spans_datasets,
)
from vfs.dashboard.plots import SVG_POINTS, overlaid_distributions, score_scatter
from vfs.feature_search import FeatureSearch
from vfs.features.geometry import mask_to_grid
from vfs.similarity.exact import SearchResult
from vfs.similarity.region import Region

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "brick.png", "rocket.jpg"]


def outcome(setup: Setup, paths: list[str], scores: list[float]) -> SetupResult:
    values = np.array(scores, dtype=np.float32)
    result = SearchResult(values, np.zeros((len(values), 2), np.int64), (1, 1), np.ones((1, 1)))
    return SetupResult(setup, result, paths, [None] * len(paths), 0.0)


SAME_A = Setup("m", "blocks.5", 7, Path("/data/photos"))
SAME_B = Setup("m", "blocks.6", 7, Path("/data/photos"))
OTHER = Setup("m", "blocks.6", 7, Path("/data/sketches"))


def test_setup_names_say_what_differs():
    assert setup_names([SAME_A, SAME_B]) == ["A · blocks.5", "B · blocks.6"]
    assert setup_names([SAME_B, OTHER]) == ["A · photos", "B · sketches"]
    assert setup_names([SAME_A, OTHER]) == ["A · blocks.5 · photos", "B · blocks.6 · sketches"]
    assert SAME_A.describe() == "m · blocks.5 · 7×7 · photos"


def test_scores_are_aligned_by_path_whatever_the_cache_order():
    a = outcome(SAME_A, ["x.png", "y.png", "z.png", "only-a.png"], [0.1, 0.2, 0.3, 0.4])
    b = outcome(SAME_B, ["z.png", "only-b.png", "x.png", "y.png"], [0.9, 0.8, 0.7, 0.6])
    paths, first, second = aligned_scores(a, b)
    assert paths == ["x.png", "y.png", "z.png"]
    np.testing.assert_allclose(first, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(second, [0.7, 0.6, 0.9], rtol=1e-6)


def test_pair_agreement_matches_scipy_and_the_top_k_sets():
    rng = np.random.default_rng(7)
    paths = [f"img{i:03d}.jpg" for i in range(60)]
    a_scores = rng.normal(size=60)
    b_scores = a_scores + rng.normal(scale=0.7, size=60)
    b_scores[[4, 9]] = -np.inf  # the excluded query, say
    order = rng.permutation(60)  # the second cache lists the images in another order
    results = [outcome(SAME_A, paths, list(a_scores)),
               outcome(SAME_B, [paths[i] for i in order], list(b_scores[order]))]
    pair = pair_agreement(results, 0, 1, k=10)
    keep = np.isfinite(b_scores)
    a32, b32 = a_scores.astype(np.float32)[keep], b_scores.astype(np.float32)[keep]
    assert pair.images == 58
    assert pair.spearman == pytest.approx(stats.spearmanr(a32, b32).statistic, abs=1e-12)
    top_a = set(np.argsort(-a32)[:10].tolist())
    top_b = set(np.argsort(-b32)[:10].tolist())
    assert pair.shared == len(top_a & top_b)
    assert pair.jaccard == pytest.approx(len(top_a & top_b) / len(top_a | top_b))
    assert (pair.shared, pair.jaccard) == (top_k_overlap(a32, b32, 10)[0], pytest.approx(top_k_overlap(a32, b32, 10)[1]))
    row = pair.row(["A · blocks.5", "B · blocks.6"])
    assert row["setups"] == "A · blocks.5 vs B · blocks.6" and row["top-10 shared"] == pair.shared


def test_agreements_only_pair_setups_over_the_same_dataset():
    paths = ["x.png", "y.png", "z.png"]
    results = [outcome(SAME_A, paths, [0.1, 0.2, 0.3]), outcome(OTHER, paths, [0.3, 0.2, 0.1]),
               outcome(SAME_B, paths, [0.3, 0.2, 0.1])]
    (pair,) = agreements(results, k=1)
    assert (pair.first, pair.second) == (0, 2) and pair.spearman == pytest.approx(-1.0)
    assert pair.shared == 0 and pair.jaccard == 0.0
    assert spans_datasets(results) and not spans_datasets(results[::2])


def test_pair_without_common_images_is_undefined():
    pair = pair_agreement([outcome(SAME_A, ["a.png"], [0.5]), outcome(SAME_B, ["b.png"], [0.5])], 0, 1, k=5)
    assert pair.images == 0 and np.isnan(pair.spearman) and np.isnan(pair.jaccard)


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory, lite0):
    """Five photos, and a copy of them elsewhere (another dataset), with caches for three setups."""
    root = tmp_path_factory.mktemp("comparison")
    photos, copies, cache_dir = root / "photos", root / "copies", root / "cache"
    for folder in (photos, copies):
        folder.mkdir()
        for name in PHOTOS:
            shutil.copy(package_photo(name), folder / name)
    searches = {
        "deep": FeatureSearch(photos, lite0, "blocks.6", cache_dir=cache_dir),
        "coarse": FeatureSearch(photos, lite0, "blocks.5", grid=3, cache_dir=cache_dir),
        "copies": FeatureSearch(copies, lite0, "blocks.6", cache_dir=cache_dir),
    }
    for search in searches.values():
        search.index(workers=0)
    return photos, searches


def setup_of(search: FeatureSearch) -> Setup:
    return Setup(search.model.name, search.layer.name, search.grid, search.data.resolve())


def test_a_grid_mask_maps_onto_each_setups_grid(two_datasets):
    photos, searches = two_datasets
    weights = np.zeros((7, 7), np.float32)
    weights[1:4, 2:5] = 1.0
    region = Region.from_weights(weights)
    for name in ("deep", "coarse"):
        search = searches[name]
        found = search_setup(setup_of(search), search, photos / "chelsea.png", region, top_k=3, exclude_query=True)
        np.testing.assert_allclose(found.result.grid_mask, mask_to_grid(weights, search.grid))
        assert "chelsea.png" not in [m.path for m in found.result.matches]
        assert found.paths == search.cache.paths and len(found.result.scores) == len(PHOTOS)


def test_a_query_from_another_dataset_is_computed_by_the_model(two_datasets):
    photos, searches = two_datasets
    search = searches["copies"]
    region = Region.from_box((100, 40, 300, 200))
    found = search_setup(setup_of(search), search, photos / "chelsea.png", region, top_k=2, exclude_query=True)
    best = found.result.matches[0]
    assert best.path == "chelsea.png"  # its copy: not excluded, since the query is not this dataset's image
    assert best.score == pytest.approx(1.0, abs=2e-3)  # the model's features equal the copy's cached ones
    same = search_setup(setup_of(searches["deep"]), searches["deep"], photos / "chelsea.png", region, 2, False)
    np.testing.assert_allclose(found.result.scores, same.result.scores, atol=2e-3)


def test_real_setups_agree_as_computed_by_hand(two_datasets):
    photos, searches = two_datasets
    region = Region.from_box((0, 0, 256, 256))
    results = [search_setup(setup_of(searches[name]), searches[name], photos / "coffee.png", region, 2, True)
               for name in ("deep", "coarse", "copies")]
    (pair,) = agreements(results, k=2)
    a, b = results[0].result.scores, results[1].result.scores
    keep = np.isfinite(a)
    assert pair.images == len(PHOTOS) - 1
    assert pair.spearman == pytest.approx(stats.spearmanr(a[keep], b[keep]).statistic)


def test_scatter_names_every_image_and_colours_the_top_k():
    x = np.array([0.9, 0.8, 0.1, 0.2, -np.inf, 0.3])
    y = np.array([0.1, 0.8, 0.9, 0.2, 0.5, 0.3])
    paths = [f"dir/img{i}.jpg" for i in range(6)]
    figure = score_scatter(x, y, paths, "A · blocks.5", "B · blocks.6", top_k=2)
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"top-k of both", "top-k of A only", "top-k of B only", "neither"}
    assert list(by_name["top-k of both"].x) == [0.8]
    assert list(by_name["top-k of A only"].x) == [0.9] and list(by_name["top-k of B only"].y) == [0.9]
    hovered = [text for trace in figure.data for text in trace.hovertext]
    assert len(hovered) == 5 and not any("img4" in text for text in hovered)  # not scored by A
    assert any(text.startswith("dir/img1.jpg<br>A · blocks.5: 0.800") for text in hovered)
    assert all(trace.type == "scatter" for trace in figure.data)
    many = np.linspace(0, 1, SVG_POINTS + 1)
    assert {trace.type for trace in score_scatter(many, many, [str(i) for i in range(len(many))], "A", "B", 5).data} \
        == {"scattergl"}


def test_overlaid_distributions_share_bins_and_normalise_each_dataset():
    rng = np.random.default_rng(2)
    photos, sketches = rng.normal(0.3, 0.1, 200), np.append(rng.normal(0.1, 0.05, 50), -np.inf)
    figure = overlaid_distributions({"A · photos": photos, "B · sketches": sketches}, bins=20)
    first, second = figure.data
    assert first.name == "A · photos (200 images)" and second.name == "B · sketches (50 images)"
    assert first.xbins == second.xbins and first.histnorm == second.histnorm == "percent"
    assert len(second.x) == 50 and figure.layout.barmode == "overlay"
    assert first.xbins.start == pytest.approx(min(photos.min(), sketches[:-1].min()), abs=1e-5)
