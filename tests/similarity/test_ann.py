"""The approximate first stage: recall on real photos, exact re-ranking, staleness, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.support.data import SKIMAGE_PHOTOS, package_photo
from vfs.cache.feature_cache import FeatureCache, ShardRows, ShardStore
from vfs.cache.indexing import build_index
from vfs.cli import main
from vfs.errors import CacheError
from vfs.similarity.exact import Query, search

faiss = pytest.importorskip("faiss")
from vfs.similarity.approximate import Shortlist, approximate_search, pooled_windows, region_layouts  # noqa: E402  (needs faiss)

LAYER, GRID = "blocks.5", 7
#: Stated floor: mean recall@10 of the approximate search when the index proposes 20 of the 56 images
#: (measured: 0.98).
RECALL_FLOOR, CANDIDATES = 0.9, 20


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory, lite0) -> FeatureCache:
    """56 real photos: 14 pictures, each as is, mirrored, and two 70% crops."""
    root = tmp_path_factory.mktemp("real") / "photos"
    for name in [*SKIMAGE_PHOTOS, "china.jpg", "flower.jpg"]:
        image = Image.open(package_photo(name)).convert("RGB")
        image.thumbnail((320, 320))  # small files: decoding stays quick
        w, h = image.size
        variants = {"as-is": image, "mirrored": ImageOps.mirror(image),
                    "crop-tl": image.crop((0, 0, int(0.7 * w), int(0.7 * h))),
                    "crop-br": image.crop((int(0.3 * w), int(0.3 * h), w, h))}
        for variant, picture in variants.items():
            (root / variant).mkdir(parents=True, exist_ok=True)
            picture.save(root / variant / f"{Path(name).stem}.png")
    summary = build_index(root, lite0, LAYER, GRID, root.parent / "cache", batch_size=16)
    return FeatureCache.open(summary.cache_dir)


def queries(cache: FeatureCache) -> list[Query]:
    one = np.zeros((GRID, GRID), np.float32)
    one[3, 3] = 1
    block = np.zeros((GRID, GRID), np.float32)
    block[1:4, 2:5] = 1
    masks = [one, block, np.ones((GRID, GRID), np.float32)]
    return [Query(cache.features(i).astype(np.float32), m) for i in range(0, len(cache), 4) for m in masks]


def test_layouts_reach_every_cell_and_the_far_border():
    layouts = region_layouts(7)
    assert [(l.size, l.positions) for l in layouts] == [
        (1, (0, 1, 2, 3, 4, 5, 6)), (3, (0, 1, 2, 3, 4)), (5, (0, 1, 2)), (7, (0,))]
    assert sum(l.windows for l in layouts) == 84
    assert [l.size for l in region_layouts(1)] == [1]
    assert [(l.size, l.positions) for l in region_layouts(14)][3:] == [(8, (0, 2, 4, 6)), (13, (0, 1)), (14, (0,))]


def test_pooled_windows_are_normalised_window_means():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((3, 5, 7, 7)).astype(np.float16)
    layouts = region_layouts(7)
    for layout, vectors in zip(layouts, pooled_windows(features, layouts)):
        assert vectors.shape == (3 * layout.windows, 5)
        across = len(layout.positions)
        image, y, x = 2, across - 1, min(1, across - 1)  # image-major, then row-major windows
        top, left = layout.positions[y], layout.positions[x]
        row = image * layout.windows + y * across + x
        mean = features[image, :, top:top + layout.size, left:left + layout.size].astype(np.float64).mean(axis=(1, 2))
        np.testing.assert_allclose(vectors[row], mean / np.linalg.norm(mean), atol=1e-6)


def test_recall_on_real_photos_is_above_the_floor(real_cache):
    assert len(real_cache) == 56
    index = Shortlist.build(real_cache)
    recalls = []
    for query in queries(real_cache):
        exact = {m.index for m in search(real_cache, query, top_k=10).matches}
        approx = index.search(query, top_k=10, candidates=CANDIDATES)
        assert approx.approximate and approx.candidates == CANDIDATES
        recalls.append(len(exact & {m.index for m in approx.matches}) / 10)
    assert np.mean(recalls) >= RECALL_FLOOR, recalls


def test_every_image_a_candidate_gives_the_exact_result(real_cache):
    Shortlist.build(real_cache)  # written beside the cache, where approximate_search opens it
    for query in queries(real_cache)[:6]:
        exact = search(real_cache, query, top_k=56, exclude=[0, 9])
        approx = approximate_search(real_cache, query, top_k=56, exclude=[0, 9], candidates=56)
        assert approx.matches == exact.matches and approx.candidates == 56
        np.testing.assert_array_equal(approx.scores, exact.scores)
        assert approx.backend == f"ann+{exact.backend}"


def test_scores_of_matches_are_exact_and_unscored_images_say_so(real_cache):
    index = Shortlist.build(real_cache)
    query = queries(real_cache)[4]
    exact = search(real_cache, query, top_k=56)
    approx = index.search(query, top_k=5, candidates=8)
    scored = np.isfinite(approx.scores)
    assert scored.sum() == 8
    np.testing.assert_array_equal(approx.scores[scored], exact.scores[scored])
    for match in approx.matches:
        assert match.score == float(exact.scores[match.index])
        assert match.window[:2] == tuple(exact.windows[match.index])


def test_one_cell_regions_need_fewer_candidates(real_cache):
    index = Shortlist.build(real_cache)
    one_cell, block, full = queries(real_cache)[:3]
    assert index.default_candidates(one_cell) == 1000  # its descriptor is its exact score
    assert index.default_candidates(block) == index.default_candidates(full) == 4000
    assert index.search(one_cell, top_k=3).candidates == 56  # never more than the cache holds


def test_inverted_file_index_probing_every_list_equals_the_flat_index(real_cache):
    flat = Shortlist.build(real_cache)
    flat_results = [flat.candidates(q, 12) for q in queries(real_cache)]
    ivf = Shortlist.build(real_cache, factory={l.size: "IVF4,Flat" for l in region_layouts(GRID)})
    assert not isinstance(ivf.indexes[0], faiss.IndexFlat)
    for query, expected in zip(queries(real_cache), flat_results):
        np.testing.assert_array_equal(ivf.candidates(query, 12, nprobe=4), expected)
    reopened = Shortlist.open(real_cache)  # what was written last is what is read
    assert [i.ntotal for i in reopened.indexes] == [56 * l.windows for l in region_layouts(GRID)]


def test_a_changed_cache_or_no_index_is_a_clear_error(tmp_path):
    from tests.support.data import make_spec

    rng = np.random.default_rng(0)
    store = ShardStore.open(tmp_path / "c", make_spec(6, 4))
    rows = ShardRows(paths=[f"{i}.png" for i in range(30)], labels=[None] * 30, widths=[10] * 30, heights=[10] * 30,
                     file_sizes=[1] * 30, mtimes=[1] * 30, features=list(rng.random((30, 6, 4, 4)).astype(np.float16)))
    store.append(rows, [])
    cache = FeatureCache.open(tmp_path / "c")
    with pytest.raises(CacheError, match="no shortlist; build it with `vfs index --ann`"):
        Shortlist.open(cache)
    Shortlist.build(cache)
    Shortlist.open(cache)
    store.remove({"3.png"})
    with pytest.raises(CacheError, match="out of date"):
        Shortlist.open(FeatureCache.open(tmp_path / "c"))


def test_cli_builds_the_index_and_says_results_are_approximate(tmp_path, capsys, photo_dir):
    cache_dir = tmp_path / "cache"
    common = ["--layer", LAYER, "--cache-dir", str(cache_dir)]
    assert main(["index", str(photo_dir), *common, "--ann", "--json"]) == 0
    capsys.readouterr()
    query = ["--query", str(photo_dir / "animals" / "chelsea.png"), "--box", "100,40,300,200", "--top-k", "3"]
    assert main(["search", str(photo_dir), *common, *query, "--approximate", "--candidates", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["approximate"] is True and result["candidates"] == 4 and len(result["results"]) == 3
    assert result["results"][0]["path"] == "animals/chelsea.png"
    assert main(["search", str(photo_dir), *common, *query, "--approximate"]) == 0
    assert "approximate: the shortlist's 9 candidates scored exactly" in capsys.readouterr().out
    assert main(["search", str(photo_dir), *common, *query, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["approximate"] is False


def test_two_sessions_building_the_shortlist_at_once_build_it_once(tmp_path, lite0, photo_dir):
    import threading

    from vfs.feature_search import FeatureSearch

    fs = FeatureSearch(photo_dir, model=lite0, layer="blocks.4", grid=4, cache_dir=tmp_path / "cache")
    fs.index(batch_size=4)
    built, errors = [], []

    def build() -> None:
        try:
            built.append(fs.build_shortlist())
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(built) == 3
    assert len({id(index) for index in built}) == 1  # the later callers found the first build
    assert not [p.name for p in (fs.cache_path / "regions").iterdir() if ".tmp-" in p.name]
    fresh = FeatureSearch(photo_dir, model=lite0, layer="blocks.4", grid=4, cache_dir=tmp_path / "cache")
    assert fresh.search(photo_dir / "animals" / "chelsea.png", box=(40, 30, 300, 250), approximate=True).approximate


def test_a_damaged_shortlist_is_a_clear_error(real_cache):
    index = Shortlist.build(real_cache)
    (Shortlist.folder(real_cache) / f"size-{index.layouts[0].size}.faiss").write_bytes(b"garbage")
    with pytest.raises(CacheError, match="damaged"):
        Shortlist.open(real_cache)
