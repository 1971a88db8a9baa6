"""The widget's queries beyond one region: a region set with negatives, and the modes of the matches, from Python
and through the browser's messages (the browser itself is tests/notebook/test_jupyterlab.py's)."""

from __future__ import annotations

import numpy as np
import pytest

from vfs.analysis.match_modes import search_modes
from vfs.analysis.subset import top_matches, top_set_matches
from vfs.errors import VfsError
from vfs.feature_search import QueryRegion
from vfs.features.geometry import window_to_box
from vfs.notebook.widget import SearchWidget
from vfs.similarity.region_set import combine_scores


def drawn(w: SearchWidget, box: tuple[float, float, float, float]) -> None:
    """A box dragged in the browser, in the preview's pixels."""
    w._region = {"kind": "box", "box": list(box), "size": [w._view["width"], w._view["height"]], "from": "browser"}


def test_drawn_regions_added_to_the_query_search_as_a_set(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=4)
    w.box = (100, 30, 300, 200)
    w.add_region()
    assert w.box is None and w._region == {}  # the canvas is cleared for the next region
    w.query = "things/coffee.png"
    w.box = (100, 50, 300, 250)
    w._handle_message(w, {"type": "add-region", "negative": False}, [])
    w.query = "textures/brick.png"
    drawn(w, (0, 0, 200, 200))
    w._handle_message(w, {"type": "add-region", "negative": True}, [])

    data = indexed.data
    assert [(r.image, r.box, r.negative) for r in w.regions] == [
        (data / "animals/chelsea.png", (100, 30, 300, 200), False),
        (data / "things/coffee.png", (100, 50, 300, 250), False),
        (data / "textures/brick.png", w.regions[2].box, True)]
    expected = indexed.search_regions(w.regions, top_k=4)
    assert [(m.path, m.boxes) for m in w.results] == [(m.path, m.boxes) for m in expected.matches]
    np.testing.assert_allclose(w.search_result.scores, expected.scores)
    assert [p["boxes"] for p in w._matches] == [[[round(v, 1) for v in box] for box in m.boxes] for m in w.results]
    assert all(len(p["boxes"]) == 2 for p in w._matches) and w._matches[0]["caption"].startswith("#1 ")
    assert [r["negative"] for r in w._regions] == [False, False, True]
    assert w._regions[1]["name"] == "things/coffee.png" and w._regions[0]["thumb"].startswith("data:image/jpeg")
    assert "2 regions to look for, 1 not to" in w._status

    drawn(w, (10, 10, 100, 100))  # a drawing waits to be added: the set's results stay
    assert [m.path for m in w.results] == [m.path for m in expected.matches] and "add the drawing" in w._status
    w.exclude_query = True
    assert {m.path for m in w.results}.isdisjoint({"animals/chelsea.png", "things/coffee.png", "textures/brick.png"})


def test_removing_regions_goes_back_to_the_drawn_region(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=3)
    w.add_region(QueryRegion(indexed.data / "things/rocket.jpg", box=(50, 50, 300, 300)))
    w.add_region(QueryRegion(indexed.data / "textures/grass.png", box=(0, 0, 100, 100), negative=True))
    assert len(w.regions) == 2 and len(w._regions) == 2
    w._handle_message(w, {"type": "remove-region", "position": 0}, [])
    assert [r.negative for r in w.regions] == [True] and w.results == []
    assert "only negative regions" in w._error
    w.clear_regions()
    assert w.regions == [] and w._regions == [] and w.results == []
    w.box = (100, 30, 300, 200)
    plain = indexed.search(w.query, box=(100, 30, 300, 200), top_k=3)
    assert [(m.path, m.box) for m in w.results] == [(m.path, m.box) for m in plain.matches]
    with pytest.raises(IndexError):
        w.remove_region(3)
    w._handle_message(w, {"type": "remove-region", "position": 3}, [])
    assert "not a region 3" in w._error


def test_adding_without_a_drawn_region_says_so(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png")
    with pytest.raises(VfsError, match="Draw a region"):
        w.add_region()
    w._handle_message(w, {"type": "add-region", "negative": True}, [])
    assert "Draw a region" in w._error and w.regions == []


def test_modes_group_the_matches_and_choosing_one_filters_the_gallery(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=6)
    w.box = (100, 30, 300, 200)
    modes = w.modes()
    assert [m.members for m in modes] == [m.members for m in search_modes(indexed, w.search_result)]
    assert sum(mode.size for mode in modes) == 6 and len(w._modes) == len(modes)
    assert [len(shown["thumbs"]) for shown in w._modes] == [len(mode.exemplars) for mode in modes]
    assert w._modes[0]["text"].startswith(f"{modes[0].size} matches")
    w.mode = 0
    rows = np.zeros(6, dtype=bool)
    rows[modes[0].members] = True
    expected = top_matches(w.search_result, indexed.cache, rows, 6)
    assert [m.index for m in w.results] == [m.index for m in expected]
    assert [p["path"] for p in w._matches] == [m.path for m in expected]
    w._mode = -1  # the browser's click on the chosen mode
    assert w.mode is None and len(w.results) == 6
    with pytest.raises(IndexError):
        w.mode = len(modes)
    w.box = (0, 0, 100, 100)  # a new search forgets the modes
    assert w._modes == [] and w.mode is None


def test_modes_need_a_search_and_group_a_region_sets_results_too(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=5)
    with pytest.raises(VfsError, match="draw a region"):
        w.modes()
    w.add_region(QueryRegion(indexed.data / "things/rocket.jpg", box=(50, 50, 300, 300)))
    w.add_region(QueryRegion(indexed.data / "animals/chelsea.png", box=(100, 30, 300, 200)))
    w._handle_message(w, {"type": "find-modes"}, [])
    assert w._error == ""
    modes = w._found
    assert [m.members for m in modes] == [m.members for m in search_modes(indexed, w.search_result)]
    assert [len(shown["thumbs"]) for shown in w._modes] == [len(mode.exemplars) for mode in modes]
    w.mode = 0
    rows = np.zeros(len(indexed.cache), dtype=bool)
    rows[modes[0].members] = True
    expected = top_set_matches(w.search_result, indexed.cache, rows, 5)
    assert [m.index for m in w.results] == [m.index for m in expected]
    assert all(len(p["boxes"]) == 2 for p in w._matches)  # each result still shows both regions' windows
    w._mode = -1
    assert len(w.results) == 5


def test_modes_of_a_multi_scale_search_read_each_level(indexed):
    indexed.scale_level(0.5).index()
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=6, scales=(1.0, 0.5))
    w.box = (100, 50, 300, 250)
    assert {m.scale for m in w.results} == {1.0, 0.5}  # the modes below mix windows from both grids
    w._handle_message(w, {"type": "find-modes"}, [])
    assert w._error == ""
    expected = search_modes(indexed, indexed.search(w.query, box=(100, 50, 300, 250), top_k=6, scales=(1.0, 0.5)))
    assert [m.members for m in w.modes()] == [m.members for m in expected]


def test_a_region_set_is_searched_at_every_size_asked_for(indexed):
    indexed.scale_level(0.5).index()
    data = indexed.data
    regions = [QueryRegion(data / "animals/chelsea.png", box=(100, 50, 300, 250)),
               QueryRegion(data / "things/rocket.jpg", box=(50, 50, 300, 300)),
               QueryRegion(data / "textures/brick.png", box=(0, 0, 150, 150), negative=True)]
    scales = (1.0, 0.5)
    w = SearchWidget(indexed, top_k=6, scales=scales)
    for region in regions:
        w.add_region(region)
    result = w.search_result
    # each region's score in an image is its best over the sizes, as a one-region search at those sizes finds it
    alone = [indexed.search(region.image, box=region.box, top_k=0, scales=scales) for region in regions]
    expected = combine_scores(np.stack([one.scores for one in alone]), [False, False, True])
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)
    found = set()
    for match in result.matches:
        for box, scale, one in zip(match.boxes, match.scales, alone[:2]):
            assert scale == one.image_scales[match.index]
            size = tuple(int(v) for v in indexed.cache.image_sizes[match.index])
            top, left = (int(v) for v in one.windows[match.index])
            assert box == window_to_box(top, left, *one.window_shape, size, one.level_grids[scale])
            found.add(scale)
    assert found == {1.0, 0.5}  # boxes on both sizes' grids were checked
    assert all(len(p["boxes"]) == 2 for p in w._matches)
    modes = w.modes()  # each result's windows read from the levels they were found at
    assert [m.members for m in modes] == [m.members for m in search_modes(indexed, result)]
