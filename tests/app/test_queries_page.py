"""The Search page's queries beyond one region at one size: object sizes, region sets and modes (docs/queries.md)."""

from __future__ import annotations

import re

import numpy as np

from tests.support.app_cases import canvas_rect, draw, run_until
from vfs.dashboard.links import from_params
from vfs.similarity.scales import ScaledSearchResult


def unescaped(text: str) -> str:
    """AppTest returns the markdown source, where as_markdown_text backslash-escaped punctuation."""
    return re.sub(r"\\(.)", r"\1", text)


def gallery_captions(app) -> list[str]:
    return [unescaped(caption) for image in app.image for caption in image.captions if caption[:1].isdigit()]


def add_two_regions(app, case) -> None:
    """Draw the case's patch, then a box in the lower right, adding each to the query's region set."""
    for box in (case.patch_box, (256, 256, 448, 448)):
        draw(app, canvas_rect(box))
        app.run()
        app.button(key="add_region").click().run()


def opened(dashboard, case, **kwargs):
    app = dashboard(case, **kwargs).run()
    assert not app.exception, app.exception
    return app


def test_any_size_builds_the_levels_when_asked_and_captions_show_the_scale(dashboard, private_case):
    app = opened(dashboard, private_case)
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    app.toggle(key="any_size").set_value(True).run()
    assert not app.exception, app.exception
    assert app.query_params["sc"] == "multi"
    build = app.button(key="build_levels")
    assert build.label.startswith("Build the size levels (")
    build.click().run()

    def searched_every_size(app) -> bool:
        shown = app.session_state["last_search"] if "last_search" in app.session_state else None  # noqa: SIM401 - AppTest's session state has no get()
        return shown is not None and isinstance(shown.outcome.result, ScaledSearchResult)

    run_until(app, searched_every_size, timeout=240)
    assert not app.exception, app.exception
    matches = app.session_state["last_search"].outcome.result.matches
    captions = gallery_captions(app)
    assert captions and len(captions) == len(matches)
    for caption, match in zip(captions, matches):
        assert ("× size" in caption) == (match.scale != 1.0), caption

    # the modes of a multi-size search: each match's window is read from the level it was found at
    app.button(key="find_modes").click().run()
    assert not app.exception, app.exception
    _, modes = app.session_state["match_modes"]
    scored = app.session_state["last_search"].outcome.result.scores
    assert modes and sum(mode.size for mode in modes) == min(200, int(np.isfinite(scored).sum()))

    # a region set is searched at every size too, each result saying the size of each region's window
    add_two_regions(app, private_case)
    assert not app.exception, app.exception
    outcome, _ = app.session_state["last_set_search"][1]
    assert all(isinstance(region, ScaledSearchResult) for region in outcome.result.regions)
    captions = gallery_captions(app)
    assert len(captions) == len(outcome.result.matches)
    for caption, match in zip(captions, outcome.result.matches):
        assert ("× size" in caption) == any(scale != 1.0 for scale in match.scales), caption


def test_two_regions_and_a_negative_search_the_set_and_the_link_reproduces_it(dashboard, private_case):
    app = opened(dashboard, private_case)
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    app.button(key="add_region").click().run()
    draw(app, canvas_rect((256, 256, 448, 448)))
    app.run()
    app.button(key="add_region").click().run()
    draw(app, canvas_rect((0, 320, 128, 448)))
    app.run()
    app.button(key="add_negative").click().run()
    assert not app.exception, app.exception
    regions = app.session_state["region_set"]
    assert [r.negative for r in regions] == [False, False, True]
    outcome, _ = app.session_state["last_set_search"][1]
    assert len(outcome.result.negative) == 3 and outcome.result.matches
    assert all(len(match.boxes) == 2 for match in outcome.result.matches)
    captions = gallery_captions(app)
    assert captions and captions[0].startswith("1.")

    params = {name: app.query_params[name] for name in app.query_params}
    params["r"] = _all_values(app, "r")
    shared, problems = from_params(params)
    assert not problems and len(shared.regions) == 3 and shared.regions[2].negative
    reopened = dashboard(private_case, query_params=params).run()
    assert not reopened.exception, reopened.exception
    again = reopened.session_state["region_set"]
    assert [(r.query.key, r.region.token, r.negative) for r in again] == \
           [(r.query.key, r.region.token, r.negative) for r in regions]
    outcome_again, _ = reopened.session_state["last_set_search"][1]
    assert [m.path for m in outcome_again.result.matches] == [m.path for m in outcome.result.matches]


def _all_values(app, name: str) -> list[str]:
    params = app.query_params
    if hasattr(params, "get_all"):
        return list(params.get_all(name))
    value = params[name]
    return value if isinstance(value, list) else [value]


def test_choosing_a_mode_filters_the_gallery(dashboard, private_case):
    app = opened(dashboard, private_case)
    app.slider(key="top_k").set_value(20)
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    app.button(key="find_modes").click().run()
    assert not app.exception, app.exception
    _, modes = app.session_state["match_modes"]
    scored = app.session_state["last_search"].outcome.result.scores
    assert modes and sum(mode.size for mode in modes) == min(200, len(scored))
    unfiltered = gallery_captions(app)
    app.button(key="mode-1").click().run()
    assert not app.exception, app.exception
    view = app.session_state["filtered_gallery"][1]
    kept = view.outcome.result.matches
    assert kept and {match.index for match in kept} <= set(modes[0].members)
    assert len(gallery_captions(app)) == len(kept) == min(len(modes[0].members), len(unfiltered))
    app.button(key="mode-all-1").click().run()
    assert gallery_captions(app) == unfiltered


def test_a_sets_results_have_details_label_filters_and_their_score_plot(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    add_two_regions(app, constructed_case)
    assert not app.exception, app.exception
    outcome, _ = app.session_state["last_set_search"][1]
    assert len(gallery_captions(app)) == len(outcome.result.matches)
    assert [chart for chart in app.get("plotly_chart")]  # the set's score distribution

    app.button(key="set-details-1").click().run()
    assert not app.exception, app.exception
    captions = [unescaped(caption) for image in app.image for caption in image.captions]
    assert "Where each region to look for was found" in captions
    assert sum(caption.startswith("Region ") and ", like this" in caption for caption in captions) == 2
    assert sum(caption.startswith("Every window position") for caption in captions) == 2
    first = outcome.result.matches[0]
    assert any(f"{first.score:.3f} = mean(" in unescaped(markdown.value) for markdown in app.markdown)

    app.multiselect(key="label_filter").set_value(["photos"]).run()
    assert not app.exception, app.exception
    kept, _ = app.session_state["filtered_set_gallery"][1]
    labels = app.session_state["last_set_search"][1][0].result
    assert kept and all(match.label == "photos" for match in kept)
    photos = [m for m in labels.matches if m.label == "photos"]
    assert [m.index for m in kept][:len(photos)] == [m.index for m in photos]  # the same order, more of them
    assert len(gallery_captions(app)) == len(kept) and app.query_params["labels"] == "photos"
    for page in ("app_pages/map.py", "app_pages/search.py"):
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
    assert app.multiselect(key="label_filter").value == ["photos"] and len(app.session_state["region_set"]) == 2
    assert len(gallery_captions(app)) == len(kept)


def test_a_sets_matches_have_modes_that_filter_its_gallery_and_are_in_the_link(dashboard, private_case):
    app = opened(dashboard, private_case)
    add_two_regions(app, private_case)
    app.button(key="find_modes").click().run()
    assert not app.exception, app.exception
    search_id, modes = app.session_state["match_modes"]
    outcome, _ = app.session_state["last_set_search"][1]
    assert search_id[0] == "set" and modes == search_modes_of(app, outcome.result)
    app.button(key="mode-1").click().run()
    assert not app.exception, app.exception
    kept, _ = app.session_state["filtered_set_gallery"][1]
    assert kept and {match.index for match in kept} <= set(modes[0].members)
    assert len(gallery_captions(app)) == len(kept) and app.query_params["mode"] == "1"
    link = {name: _all_values(app, name) if name == "r" else app.query_params[name] for name in app.query_params}

    visitor = dashboard(private_case, query_params=link).run()
    assert not visitor.exception, visitor.exception
    assert [m.index for m in visitor.session_state["filtered_set_gallery"][1][0]] == [m.index for m in kept]


def search_modes_of(app, result):
    """The modes the API finds for a region set's result, on the dashboard's cache."""
    from vfs.analysis.match_modes import region_set_modes
    from vfs.cache.feature_cache import FeatureCache

    return region_set_modes(FeatureCache.open(app.session_state["selection"].cache_path), result, n=200)


def test_region_alone_searches_the_regions_own_features_and_the_link_keeps_it(dashboard, private_case):
    from vfs.dashboard.searching import window_heatmap
    from vfs.feature_search import FeatureSearch

    app = opened(dashboard, private_case)
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    in_photo = app.session_state["last_search"].outcome
    assert not in_photo.region_alone and "alone" not in app.query_params
    app.toggle(key="region_alone").set_value(True).run()
    assert not app.exception, app.exception
    outcome = app.session_state["last_search"].outcome
    assert outcome.region_alone and app.query_params["alone"] == "1"
    assert any("the region alone, without its photo" in unescaped(c.value) for c in app.caption)
    assert outcome.result.matches[0].path == private_case.target  # the pasted patch, in another photo
    fs = FeatureSearch(private_case.data, cache_dir=private_case.cache_dir)
    expected = fs.search(private_case.data / private_case.query, box=private_case.patch_box, top_k=0,
                         exclude_query=True, region_alone=True)
    np.testing.assert_allclose(outcome.result.scores, expected.scores, atol=1e-5)
    assert not np.allclose(outcome.result.scores, in_photo.result.scores, atol=1e-4)
    # the Details dialog's heatmap and unit explanations score the same query: its best window is the match's score
    best = outcome.result.matches[0]
    heat = window_heatmap(fs, private_case.data, outcome.query, outcome.region, best.index, region_alone=True)
    assert abs(float(heat.max()) - best.score) < 1e-4
    in_photo_heat = window_heatmap(fs, private_case.data, outcome.query, outcome.region, best.index)
    assert abs(float(in_photo_heat.max()) - best.score) > 1e-3

    shared, problems = from_params(dict(app.query_params))
    assert not problems and shared.region_alone is True
    linked = dashboard(private_case, query_params=dict(app.query_params)).run()
    assert not linked.exception, linked.exception
    assert linked.toggle(key="region_alone").value is True
    assert linked.session_state["last_search"].outcome.region_alone
