"""The match dialog's explanations and the Units page, through streamlit's AppTest."""

from __future__ import annotations

import shutil

from tests.support.app_cases import ConstructedCase, canvas_rect, draw, run_until, shown
from tests.support.data import package_photo
from vfs.analysis.units import channel_contributions, top_activations
from vfs.cache.feature_cache import FeatureCache
from vfs.similarity.exact import Query


def _searched(dashboard, case):
    """The dashboard after a box around the pasted patch was drawn (query excluded), details of result 1 open."""
    app = dashboard(case).run()
    assert not app.exception, app.exception
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(case.patch_box))
    app.run()
    app.button(key="details-1").click().run()
    assert not app.exception, app.exception
    return app


def _expected_units(app, case) -> list[int]:
    """The match's top channels, computed here from the cache."""
    outcome = app.session_state["last_search"].outcome
    match = outcome.result.matches[0]
    cache = FeatureCache.open(app.session_state["selection"].cache_path)
    query = Query(cache.features(cache.index_of(case.query)).astype("float32"), outcome.result.grid_mask)
    return [int(c) for c in channel_contributions(query, cache.features(match.index), match.window).top(10)]


def test_details_list_the_channels_that_make_the_match(dashboard, constructed_case):
    app = _searched(dashboard, constructed_case)
    expected = _expected_units(app, constructed_case)
    table = app.dataframe[0].value
    assert list(table["unit"]) == [f"blocks.6 #{c}" for c in expected]
    assert all(share.endswith("%") for share in table["share"])
    unit_buttons = [button for button in app.button if button.key and button.key.startswith("unit-")]
    assert [button.key for button in unit_buttons] == [f"unit-{c}" for c in expected[:5]]
    assert unit_buttons[0].label.startswith(f"blocks.6 #{expected[0]} · ")
    # the attribution runs the model backward, so only on demand
    assert not any(caption.startswith("Why this match") for image in app.image for caption in map(shown, image.captions))

    # a widget inside the dialog reruns the dialog: here, the whole script with the dialog opened again
    app.button(key="details-1").click()
    app.toggle(key="why-match").set_value(True).run()
    assert not app.exception, app.exception
    (why,) = [caption for image in app.image for caption in map(shown, image.captions) if caption.startswith("Why this match")]
    assert "gradient×activation at blocks.6" in why
    recomputed = float(why.rsplit("recomputed score ", 1)[1])
    assert abs(recomputed - app.session_state["last_search"].outcome.result.matches[0].score) < 2e-3
    assert not any("Recomputed" in shown(warning.value) for warning in app.warning)


def test_a_unit_of_the_match_opens_with_its_exemplars(dashboard, constructed_case):
    app = _searched(dashboard, constructed_case)
    channel = _expected_units(app, constructed_case)[1]
    app.button(key="details-1").click()
    app.button(key=f"unit-{channel}").click().run()
    assert not app.exception, app.exception
    assert app.number_input(key="units_channel").value == channel  # handed over, preselected
    assert f"blocks.6 #{channel}" in [header.value for header in app.subheader]
    cache = FeatureCache.open(app.session_state["selection"].cache_path)
    expected = top_activations(cache, channel, app.slider(key="units_k").value)
    captions = [caption for image in app.image for caption in map(shown, image.captions)]
    assert len(captions) == len(expected) == min(12, constructed_case.images)
    for caption, exemplar in zip(captions, expected):
        assert exemplar.path.rsplit("/", 1)[-1] in caption and f"cell {exemplar.cell}" in caption


def test_units_page_shows_k_exemplars_of_any_channel(dashboard, constructed_case):
    app = dashboard(constructed_case).run()
    app.switch_page("app_pages/units.py").run()
    assert not app.exception, app.exception
    assert app.number_input(key="units_channel").value == 0
    app.number_input(key="units_channel").set_value(17).run()
    app.slider(key="units_k").set_value(4).run()
    cache = FeatureCache.open(app.session_state["selection"].cache_path)
    expected = top_activations(cache, 17, 4)
    captions = [caption for image in app.image for caption in map(shown, image.captions)]
    assert [caption.split(" ", 1)[0] for caption in captions] == ["1.", "2.", "3.", "4."]
    assert [f"{e.activation:.3f}" for e in expected] == [caption.split(" ")[1] for caption in captions]
    assert [e.path.rsplit("/", 1)[-1] for e in expected] == [caption.split(" · ")[2] for caption in captions]
    # back on the page later, the channel is still the one chosen
    app.switch_page("app_pages/caches.py").run()
    app.switch_page("app_pages/units.py").run()
    assert app.number_input(key="units_channel").value == 17
    app.session_state["unit_request"] = ("blocks.5", 3)  # handed over for a layer the sidebar no longer selects
    app.run()
    assert "blocks.5 #3 belongs to blocks.5" in shown(app.warning[0].value)
    assert app.number_input(key="units_channel").value == 17


def test_units_page_of_a_one_image_dataset_shows_its_one_exemplar(dashboard, tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(package_photo("coffee.png"), tmp_path / "data" / "coffee.png")
    app = dashboard(ConstructedCase(tmp_path / "data", tmp_path / "cache")).run()  # builds the one-image cache
    run_until(app, lambda a: "canvas:data:coffee.png" in a.session_state)
    app.switch_page("app_pages/units.py").run()
    assert not app.exception, app.exception
    assert not [slider for slider in app.slider if slider.key == "units_k"]
    assert [caption for image in app.image for caption in map(shown, image.captions) if "coffee.png" in caption]
