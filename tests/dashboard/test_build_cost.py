"""The cost of a missing cache, the search-again region, the approximate threshold, labels in links."""

from __future__ import annotations

import pytest

from vfs.dashboard import searching
from vfs.dashboard.build_cost import build_cost, cache_bytes, seconds_per_image
from vfs.dashboard.links import SharedSearch, from_params, to_params
from vfs.dashboard.selection import model_problem
from vfs.errors import ModelError, WeightsUnavailableError
from vfs.similarity.exact import Match


def test_a_missing_caches_cost_is_images_times_the_measured_rate_and_its_grids_on_disk(lite0):
    layer = lite0.default_layer  # blocks.6, 320 channels
    speed = seconds_per_image(lite0, layer, 7, images=2)
    assert 0 < speed < 5
    cost = build_cost(3925, layer, 7, 0.05)
    assert cost.bytes == 3925 * 49 * (320 * 2 + 4) == cache_bytes(3925, 320, 7)
    assert cost.seconds == 3925 * 0.05 and not cost.quick
    assert cost.describe() == "3,925 images, about 3 min on this machine, 118.1 MB on disk"


def test_search_from_a_match_takes_its_window_as_the_region():
    match = Match(0, "a.jpg", None, 0.9, (0.0, 0.0, 10.0, 10.0), (1, 2, 3, 2))
    mask = searching.window_region(match, 7).grid_mask
    assert mask.sum() == 6 and mask[1:4, 2:4].all()


def test_labels_travel_in_links():
    params = to_params(SharedSearch(labels=("dress", "a,b", "hat")))
    assert params == {"labels": "dress,hat"}  # a label with a comma cannot be named
    assert from_params(params) == (SharedSearch(labels=("dress", "hat")), [])
    assert "labels=" in str(from_params({"labels": " , "})[1][0])


@pytest.mark.torch  # timm looks the weights up
def test_a_model_that_cannot_load_says_so_in_one_line_without_cli_flags(monkeypatch):
    from vfs.features import models

    monkeypatch.setattr(models, "_hub_reachable", lambda host="": False)  # as on an offline machine
    with pytest.raises(WeightsUnavailableError) as raised:
        models.load_model("resnet18.a1_in1k", "pretrained")  # weights not on this machine
    line = model_problem("resnet18.a1_in1k", raised.value)
    assert "--" not in line and "\n" not in line and "offline" in line
    assert model_problem("x", ModelError("Unknown model 'x'.\nDid you mean y?")) == "Unknown model 'x'."


def test_approximate_search_is_offered_only_from_the_measured_size(monkeypatch):
    class Small:
        cache = range(3925)

    assert "exact scan is as fast" in searching.approximate_problem(Small())
    monkeypatch.setattr(searching, "shortlist_problem", lambda search: None)
    monkeypatch.setattr(searching, "APPROXIMATE_FROM", 1000)
    assert searching.approximate_problem(Small()) is None
