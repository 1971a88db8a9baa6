"""Search state in links: encoding, exact round trips, and clear messages for bad parameters."""

from __future__ import annotations

import base64
import zlib
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vfs.dashboard.links import MapCluster, SharedSearch, ShareError, decode_mask, encode_mask, from_params, to_params
from vfs.errors import VfsError
from vfs.similarity.region import Region, quantise_weights


def test_full_state_round_trips_through_a_url():
    weights = np.zeros((7, 7), np.float32)
    weights[2:5, 1:3] = [[1.0, 0.5], [0.25, 1.0], [0.0, 0.75]]
    state = SharedSearch(dataset="data/demo", model="tf_efficientnet_lite0", layer="blocks.5", grid=7,
                         query="skimage/coffee.png", region=Region.from_weights(weights), top_k=9, exclude_query=True,
                         labels=("dress", "shirt"), cluster=MapCluster((6, 24), "3.12"), mode=2, any_size=True,
                         region_alone=True)
    url_query = urlencode(to_params(state))
    back, problems = from_params(dict(parse_qsl(url_query)))
    assert problems == []
    assert back == state  # regions compare by their exact quantised weights
    np.testing.assert_array_equal(back.region.grid_mask, quantise_weights(weights))


def test_box_region_is_kept_in_pixels():
    state = SharedSearch(query="a/b.jpg", region=Region(box=(10, 20, 110, 95)))
    params = to_params(state)
    assert params == {"q": "a/b.jpg", "box": "10,20,110,95"}
    assert from_params(params)[0].region.box == (10, 20, 110, 95)


def test_mask_encoding_is_compact():
    weights = np.zeros((14, 14), np.float32)
    weights[3:9, 4:10] = 1.0
    text = encode_mask(weights)
    assert text.startswith("14.") and len(text) < 40
    assert "=" not in text and "+" not in text and "/" not in text  # URL-safe without escaping


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 16), st.just(0)).map(lambda t: (t[0], t[0])),
              elements=st.floats(0, 1, width=32)))
def test_any_grid_mask_survives_the_link_exactly_after_quantisation(weights):
    quantised = quantise_weights(weights)
    if not quantised.any():
        with pytest.raises(ShareError, match="selects no cell"):
            decode_mask(encode_mask(quantised))
        return
    np.testing.assert_array_equal(decode_mask(encode_mask(quantised)), quantised)


@pytest.mark.parametrize(("params", "expected"), [
    ({"grid": "0"}, "grid='0' must be a whole number from 1 to 64"),
    ({"grid": "7x"}, "grid='7x'"),
    ({"k": "1000"}, "k='1000' must be a whole number from 1 to 100"),
    ({"x": "yes"}, "x='yes' must be 0 or 1"),
    ({"q": "../secret.png"}, "must be a path inside the dataset folder"),
    ({"q": "/etc/passwd"}, "must be a path inside the dataset folder"),
    ({"q": "a.png", "box": "1,2,3"}, "box='1,2,3' must be four whole numbers"),
    ({"q": "a.png", "box": "10,10,5,20"}, "is empty"),
    ({"q": "a.png", "box": "-5,0,10,10"}, "negative coordinates"),
    ({"q": "a.png", "mask": "7"}, "is not of the form G.<data>"),
    ({"q": "a.png", "mask": "99.eJwDAAAAAAE"}, "1 ≤ G ≤ 64"),
    ({"q": "a.png", "mask": "7.%%%"}, "damaged"),
    ({"q": "a.png", "mask": "7.eJxjAAAAAQAB"}, "holds 1 cells but a 7×7 grid needs 49"),
    ({"q": "a.png", "mask": "7.eJxjAAAAAQ"}, "damaged"),  # the stream is cut short
    ({"q": "a.png", "box": "1,1,5,5", "mask": "2.eJxjZAQAAAQAAg"}, "both box= and mask="),
    ({"box": "1,1,5,5"}, "no usable query image"),
    ({"model": ""}, "model= must be a non-empty text"),
    ({"cluster": "3.1"}, "cluster='3.1' must be the map's levels and a cluster id"),
    ({"cluster": "6,24:x"}, "must be the map's levels and a cluster id"),
    ({"mode": "0"}, "mode='0' must be a whole number from 1 to 64"),
])
def test_bad_parameters_are_reported_one_by_one_and_the_rest_is_kept(params, expected):
    state, problems = from_params({**params, "layer": "blocks.3"})
    assert len(problems) == 1 and expected in str(problems[0])
    assert isinstance(problems[0], VfsError)
    assert state.layer == "blocks.3"
    if "box" in params or "mask" in params:
        assert state.region is None


def test_compressed_mask_cannot_inflate_past_its_grid():
    bomb = base64.urlsafe_b64encode(zlib.compress(bytes(10_000_000), 9)).decode().rstrip("=")
    with pytest.raises(ShareError, match="a 7×7 grid needs 49"):
        decode_mask(f"7.{bomb}")


def test_repeated_parameters_use_the_last_value():
    state, problems = from_params({"k": ["3", "8"], "q": "x.png"})
    assert problems == [] and state.top_k == 8


def test_unknown_parameters_are_ignored():
    state, problems = from_params({"embed": "true", "utm_source": "mail"})
    assert problems == [] and state == SharedSearch()


_NAMES = ["data", "model", "layer", "grid", "q", "u", "box", "mask", "k", "x", "a"]
_near_valid = st.one_of(
    st.from_regex(r"-?[0-9]{1,6}(,-?[0-9]{1,6}){0,4}", fullmatch=True),  # numbers and boxes
    st.from_regex(r"[0-9]{1,3}\.[A-Za-z0-9_\-=%]{0,40}", fullmatch=True),  # masks
    st.from_regex(r"[0-9a-f]{30,34}", fullmatch=True),  # upload ids
    st.sampled_from(["0", "1", "²", "٣", "1" * 5000, "../x.png", "/etc/passwd", "%2e%2e%2fx", "a\x00b", " "]),
)
_value = st.one_of(st.text(max_size=60), _near_valid)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(_NAMES), st.text(max_size=8)),
                       st.one_of(_value, st.lists(_value, min_size=1, max_size=3)), max_size=8))
def test_decoding_any_parameters_never_raises_and_reports_only_share_errors(params):
    state, problems = from_params(params)
    assert isinstance(state, SharedSearch)
    assert all(type(problem) is ShareError and str(problem) and "\n" not in str(problem) for problem in problems)
    if state.query is not None:
        assert not state.query.startswith("/") and ".." not in state.query.split("/")
