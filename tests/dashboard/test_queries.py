"""The Search page's queries beyond one region: links with sizes and region sets, the set's bookkeeping,
size levels' costs, and modes as filters (vfs/dashboard/queries.py, vfs/dashboard/links.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vfs.analysis.match_modes import MatchMode, describe_mode, exemplar_matches, mode_rows
from vfs.dashboard.links import (
    MAX_SET_REGIONS,
    SharedRegion,
    SharedSearch,
    ShareError,
    decode_set_region,
    encode_set_region,
    from_params,
    to_params,
)
from vfs.dashboard.queries import (
    MAX_REGIONS,
    SetRegion,
    add_region,
    level_cost,
    remove_region,
    scale_caption,
    searches_as_set,
    set_problem,
)
from vfs.dashboard.query_images import QueryImage
from vfs.pictures import boxes_picture
from vfs.similarity.region import Region


def _mask(cells: slice) -> Region:
    weights = np.zeros((7, 7), np.float32)
    weights[cells, cells] = 0.5
    return Region.from_weights(weights)


SET = (SharedRegion(Region(box=(1, 2, 30, 40)), query="cats/a b@c.jpg"),
       SharedRegion(_mask(slice(2, 5)), negative=True, upload="0" * 32),
       SharedRegion(Region(box=(0, 0, 9, 9)), query="dogs/d.png"))


def test_sizes_and_a_region_set_round_trip_through_a_url():
    state = SharedSearch(query="cats/a b@c.jpg", any_size=True, regions=SET)
    url_query = urlencode(to_params(state), doseq=True)
    pairs = parse_qsl(url_query)
    params = {name: value for name, value in pairs if name != "r"} | {"r": [v for n, v in pairs if n == "r"]}
    back, problems = from_params(params)
    assert problems == []
    assert back == state
    assert to_params(SharedSearch(any_size=False)) == {"sc": "1"}


def test_an_upload_id_must_look_like_one():
    with pytest.raises(ShareError):
        decode_set_region("pbox:1,2,3,4@u:../../etc")
    assert decode_set_region(encode_set_region(SET[1])) == SET[1]


def test_a_link_holds_at_most_the_set_size_and_says_so():
    values = [encode_set_region(SET[0])] * (MAX_SET_REGIONS + 2)
    shared, problems = from_params({"r": values})
    assert len(shared.regions) == MAX_SET_REGIONS
    assert any("only the first" in str(problem) for problem in problems)


@pytest.mark.parametrize("value", ["", "x", "pbox:1,2,3,4", "qbox:1,2,3,4@q:a.jpg", "pcircle:1@q:a.jpg",
                                   "pbox:1,2,3@q:a.jpg", "pbox:1,2,3,4@q:/etc/passwd", "pbox:1,2,3,4@q:../a",
                                   "pmask:7.!!!@q:a.jpg", "pbox:1,2,3,4@z:a.jpg", "psc=multi"])
def test_bad_set_regions_are_reported_not_raised(value):
    shared, problems = from_params({"r": [value], "sc": "sometimes"})
    assert shared.regions == () and len(problems) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=12), st.text(max_size=10))
def test_decoding_any_set_and_size_never_raises(values, size):
    shared, problems = from_params({"r": values, "sc": size})
    assert all(isinstance(problem, ShareError) for problem in problems)
    assert len(shared.regions or ()) <= MAX_SET_REGIONS


def test_scale_captions_name_the_size():
    assert scale_caption(1.0) == ""
    assert scale_caption(0.5) == "½× size"
    assert scale_caption(2.0) == "2× size"
    assert scale_caption(1.41) == "1.41× size"


def test_a_level_costs_one_over_scale_squared_of_the_base():
    base, half = level_cost(0.01, 100, 8, 7, 1.0), level_cost(0.01, 100, 8, 7, 0.5)
    assert half.seconds == pytest.approx(4 * base.seconds)
    assert half.bytes == 100 * 14 * 14 * (2 * 8 + 4)


def test_the_region_set_adds_replaces_and_removes():
    image = QueryImage.from_dataset("a.jpg")
    first, second = SetRegion(image, Region(box=(0, 0, 10, 10))), SetRegion(image, Region(box=(5, 5, 20, 20)))
    regions = add_region(add_region((), first), second)
    assert not searches_as_set(regions[:1]) and searches_as_set(regions)
    flipped = add_region(regions, SetRegion(image, Region(box=(0, 0, 10, 10)), negative=True))
    assert [r.negative for r in flipped] == [False, True]  # drawn again as a negative: replaced, not doubled
    assert searches_as_set(flipped[1:]) and set_problem(flipped[1:]) is not None and set_problem(flipped) is None
    assert remove_region(flipped, flipped[0].key) == flipped[1:]
    many = ()
    for i in range(MAX_REGIONS + 3):
        many = add_region(many, SetRegion(image, Region(box=(0, 0, 10 + i, 10))))
    assert len(many) == MAX_REGIONS and many[-1].region.box == (0, 0, 10 + MAX_REGIONS + 2, 10)


def test_modes_filter_rows_and_describe_their_labels():
    mode = MatchMode(members=[4, 1], exemplars=[1], labels={"cat": 1, "": 1})
    assert mode_rows(mode, 6).tolist() == [False, True, False, False, True, False]
    assert describe_mode(mode, lambda label: {"cat": "Cat"}.get(label)) == "2 matches · Cat 1, unlabelled 1"


def test_a_set_match_outlines_every_box():
    picture = boxes_picture(Image.new("RGB", (100, 100), (200, 200, 200)), [(0, 0, 20, 20), (60, 60, 100, 100)],
                            (200, 200))
    pixels = np.asarray(picture)
    assert tuple(pixels[5, 5]) == (200, 200, 200) and tuple(pixels[25, 25]) != (200, 200, 200) and tuple(pixels[40, 40]) == (200, 200, 200)
    assert tuple(pixels[0, 0]) != (200, 200, 200)  # outlined


def test_a_modes_exemplars_are_matches_best_score_first(tmp_path):
    from tests.support.data import write_cache
    from vfs.similarity.exact import Query, search

    rng = np.random.default_rng(0)
    cache = write_cache(tmp_path / "c", rng.random((8, 4, 5, 5)).astype(np.float16))
    mask = np.zeros((5, 5), np.float32)
    mask[1:3, 1:3] = 1
    result = search(cache, Query(rng.random((4, 5, 5)).astype(np.float32), mask), top_k=8)
    mode = MatchMode(members=[1, 3, 5, 6], exemplars=[6, 1, 3], labels={"": 4})
    matches = exemplar_matches(mode, result, cache)
    assert sorted(m.index for m in matches) == [1, 3, 6]
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert all(m.box == next(r.box for r in result.matches if r.index == m.index) for m in matches)


def test_a_set_matchs_parts_are_each_regions_own_search(tmp_path):
    from tests.support.data import write_cache
    from vfs.dashboard.queries import SetOutcome, explain_set_score, match_parts
    from vfs.similarity.exact import Query, search
    from vfs.similarity.region_set import RegionQuery, search_region_set

    rng = np.random.default_rng(2)
    cache = write_cache(tmp_path / "c", rng.random((9, 4, 7, 7)).astype(np.float16), sizes=(300, 200))
    queries = []
    for cells in ((slice(1, 3), slice(2, 5)), (slice(4, 6), slice(0, 2)), (slice(0, 3), slice(4, 7))):
        mask = np.zeros((7, 7), np.float32)
        mask[cells] = 1
        queries.append(Query(rng.random((4, 7, 7)).astype(np.float32), mask))
    negative = [False, True, False]
    result = search_region_set(cache, [RegionQuery(q, n) for q, n in zip(queries, negative)], top_k=4,
                               negative_weight=0.5)
    image = QueryImage.from_dataset("img00000.png")
    kept = tuple(SetRegion(image, Region(box=(0, 0, 10 + i, 10)), n) for i, n in enumerate(negative))
    outcome = SetOutcome(result, kept, 0.1)
    for match in result.matches:
        parts = match_parts(outcome, match, cache)
        assert [part.region for part in parts] == list(kept)
        for part, query in zip(parts, queries):
            alone = next(m for m in search(cache, query, top_k=9).matches if m.index == match.index)
            assert (part.box, part.window) == (alone.box, alone.window)
            assert part.score == pytest.approx(alone.score, abs=1e-6)
        assert [part.box for part, n in zip(parts, negative) if not n] == match.boxes
        positives, nearest = (parts[0].score + parts[2].score) / 2, parts[1].score
        assert match.score == pytest.approx(positives - 0.5 * nearest, abs=1e-5)
        assert explain_set_score(match, negative, 0.5) == (
            f"{match.score:.3f} = mean({parts[0].score:.3f}, {parts[2].score:.3f}) − 0.5 × max({parts[1].score:.3f})")
