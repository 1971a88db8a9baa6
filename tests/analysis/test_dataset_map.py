"""The dataset map: pooled features, nested Ward clusters, central images, the treemap."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.data import write_cache
from vfs.analysis.dataset_map import (
    ROOT,
    build_map,
    central_rows,
    clicked_cluster,
    dataset_map,
    nested_assignments,
    pooled_features,
)
from vfs.dashboard.plots import dataset_treemap


def blobs(per_blob: int = 20, blobs: int = 3, dims: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``blobs`` well-separated directions, and which blob each came from."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dims)[:blobs] * 5
    owner = np.repeat(np.arange(blobs), per_blob)
    points = centres[owner] + rng.normal(scale=0.3, size=(len(owner), dims))
    return points / np.linalg.norm(points, axis=1, keepdims=True), owner


def test_pooled_features_are_normalised_cell_means(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(9, 6, 4, 4)).astype(np.float16)
    features[3] = 0  # an all-zero image stays zero instead of dividing by zero
    cache = write_cache(tmp_path / "cache", features, shard_rows=4)
    pooled = pooled_features(cache)
    expected = features.astype(np.float32).mean(axis=(2, 3))
    norms = np.linalg.norm(expected, axis=1, keepdims=True)
    expected = np.where(norms > 0, expected / np.where(norms > 0, norms, 1), 0)
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    assert pooled.dtype == np.float32 and not pooled[3].any()


def test_levels_nest_and_recover_separated_groups():
    points, owner = blobs()
    assignments = nested_assignments(points, (3, 8))
    assert len(np.unique(assignments[:, 0])) == 3
    for blob in range(3):  # each blob is exactly one top-level cluster
        assert len(np.unique(assignments[owner == blob, 0])) == 1
    for fine in np.unique(assignments[:, 1]):  # every finer cluster lies inside one coarser cluster
        assert len(np.unique(assignments[assignments[:, 1] == fine, 0])) == 1
    assert len(np.unique(assignments[:, 1])) == 8


def test_levels_must_increase_and_tiny_datasets_are_one_cluster():
    with pytest.raises(ValueError):
        nested_assignments(np.ones((5, 3)), (4, 2))
    with pytest.raises(ValueError):
        nested_assignments(np.ones((5, 3)), ())
    assert nested_assignments(np.ones((1, 3)), (2, 4)).tolist() == [[1, 1]]
    assert len(np.unique(nested_assignments(blobs()[0][:4], (2, 50))[:, 1])) == 4  # no more clusters than images


def test_every_image_is_in_exactly_one_leaf_and_children_partition_parents():
    points, owner = blobs(per_blob=15, blobs=4)
    labels = [f"class{o}" for o in owner]
    clusters = build_map(points, [f"{i}.jpg" for i in range(len(points))], labels, levels=(4, 10), central=3)
    leaves = clusters.leaves()
    counts = np.bincount(np.concatenate([leaf.rows for leaf in leaves]), minlength=len(points))
    assert (counts == 1).all()
    for cluster in clusters.clusters:
        children = clusters.children(cluster.id)
        if children:
            np.testing.assert_array_equal(np.sort(np.concatenate([c.rows for c in children])), cluster.rows)
            assert all(child.level == cluster.level + 1 for child in children)
            assert [c.size for c in children] == sorted((c.size for c in children), reverse=True)
    assert clusters.clusters[0].id == ROOT and clusters.clusters[0].size == len(points)
    tops = clusters.children(ROOT)
    assert [c.id for c in tops] == ["1", "2", "3", "4"]
    assert all(c.title == f"Cluster {c.id} · {c.vote[0][0]}" for c in tops)  # pure clusters name their label
    assert {c.vote[0][0] for c in tops} == {f"class{b}" for b in range(4)}


def test_central_images_belong_to_their_cluster_and_are_closest_to_its_mean():
    points, _ = blobs(per_blob=12)
    clusters = build_map(points, [str(i) for i in range(len(points))], [None] * len(points), levels=(3, 6), central=4)
    for cluster in clusters.clusters:
        assert set(cluster.central.tolist()) <= set(cluster.rows.tolist())
        assert len(cluster.central) == min(4, cluster.size)
        centre = points[cluster.rows].mean(axis=0)
        similarity = points[cluster.rows] @ (centre / np.linalg.norm(centre))
        best = cluster.rows[np.argsort(-similarity, kind="stable")][: len(cluster.central)]
        assert cluster.central.tolist() == best.tolist()
        assert cluster.vote == () and cluster.title.startswith(("Cluster", "All images"))


def test_central_rows_break_ties_by_row():
    points = np.tile(np.array([[1.0, 0.0]]), (5, 1))
    assert central_rows(points, np.array([4, 1, 3]), 2).tolist() == [1, 3]


def test_the_map_is_deterministic_including_micro_clusters():
    points, owner = blobs(per_blob=40, blobs=3)
    paths = [str(i) for i in range(len(points))]
    first = build_map(points, paths, [None] * len(points), levels=(3, 9), seed=4, linkage_limit=50)
    second = build_map(points, paths, [None] * len(points), levels=(3, 9), seed=4, linkage_limit=50)
    assert [(c.id, c.rows.tolist(), c.central.tolist()) for c in first.clusters] == \
        [(c.id, c.rows.tolist(), c.central.tolist()) for c in second.clusters]
    assignments = nested_assignments(points, (3, 9), seed=4, linkage_limit=50, micro_clusters=30)
    for blob in range(3):  # through 30 micro-clusters, the separated groups still come out whole
        assert len(np.unique(assignments[owner == blob, 0])) == 1
    for fine in np.unique(assignments[:, 1]):
        assert len(np.unique(assignments[assignments[:, 1] == fine, 0])) == 1


def test_dataset_map_of_a_cache_and_hits(tmp_path):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(14, 5, 3, 3)).astype(np.float16)
    cache = write_cache(tmp_path / "cache", features, shard_rows=5, labels=["a"] * 7 + ["b"] * 7)
    clusters = dataset_map(cache, levels=(2, 5), central=2)
    assert clusters.paths == cache.paths and clusters.labels == cache.labels
    rows = clusters.rows_of([cache.paths[2], cache.paths[9], "not-there.png"])
    assert rows.tolist() == [2, 9]
    hits = clusters.hits(rows)
    assert hits[ROOT] == 2
    assert sum(hits[leaf.id] for leaf in clusters.leaves()) == 2
    assert all(hits[c.id] == sum(hits[child.id] for child in clusters.children(c.id))
               for c in clusters.clusters if clusters.children(c.id))


def test_treemap_ids_parents_and_values_are_consistent():
    points, owner = blobs(per_blob=10, blobs=3)
    clusters = build_map(points, [f"{i}.jpg" for i in range(30)], [f"c{o}" for o in owner], levels=(3, 7))
    hits = clusters.hits(np.array([0, 1, 25]))
    (treemap,) = dataset_treemap(clusters, hits, top_k=3, chosen="2").data
    ids, parents, values = list(treemap.ids), list(treemap.parents), list(treemap.values)
    assert ids[0] == ROOT and parents[0] == "" and values[0] == 30
    assert len(set(ids)) == len(ids) and all(parent in ids for parent in parents[1:])
    value = dict(zip(ids, values))
    for cluster_id in ids:
        children = [value[i] for i, p in zip(ids, parents) if p == cluster_id]
        if children:
            assert sum(children) == value[cluster_id]  # branchvalues="total" needs exact sums
    assert treemap.branchvalues == "total"
    texts = dict(zip(ids, treemap.text))
    marked = [i for i in ids if "of the top 3" in texts[i]]
    assert set(marked) == {i for i, n in hits.items() if n}
    widths = dict(zip(ids, treemap.marker.line.width))
    colours = dict(zip(ids, treemap.marker.line.color))
    assert colours["2"] == "#000000" and widths["2"] == 4
    assert all(widths[i] == 4 for i in marked)
    assert all(widths[i] == 1 for i in ids if i not in marked and i != "2")


def test_a_treemap_click_names_its_cluster():
    assert clicked_cluster({"selection": {"points": [{"id": "3.1", "parent": "3", "label": "x"}]}}) == "3.1"
    assert clicked_cluster({"selection": {"points": []}}) is None
    assert clicked_cluster({"selection": {"points": [{"x": 1.0}]}}) is None  # a point of another chart
    assert clicked_cluster(None) is None


def test_a_cluster_is_a_gallery_filter_and_the_filter_finds_its_cluster_again(tmp_path):
    from vfs.analysis.dataset_map import ROOT, build_map
    from vfs.analysis.subset import Subset

    rng = np.random.default_rng(3)
    features = np.concatenate([rng.normal(0, 0.05, (5, 4)) + 1, rng.normal(0, 0.05, (5, 4)) - 1])
    clusters = build_map(features, [f"img{i}.png" for i in range(10)], [None] * 10, levels=(2,))
    first = clusters.children(ROOT)[0]
    subset = clusters.subset(first.id, tmp_path)
    assert subset.paths == frozenset(clusters.paths[row] for row in first.rows) and subset.root == tmp_path
    assert clusters.cluster_holding_exactly(subset) == first.id
    assert clusters.cluster_holding_exactly(Subset(tmp_path, "other", frozenset({"img0.png"}))) == ROOT


def test_a_mixed_cluster_title_says_what_each_number_counts():
    from vfs.analysis.dataset_map import Cluster

    mixed = Cluster("3", "", 1, np.arange(1741), np.arange(3), (("n03425413", 415), ("dress", 300)))
    assert mixed.title == "Cluster 3 · 415 labelled n03425413 (of 1,741)"
