"""The user's settings outlive the pages and pickers that show them, and stay in the link (issue #16)."""

from __future__ import annotations

import numpy as np

from app_pages.shared.common import FIGURES_KEY
from tests.support.app_cases import canvas_rect, draw

LAYER_KEY = "layer:tf_efficientnet_lite0"


def opened(dashboard, case, **kwargs):
    app = dashboard(case, **kwargs).run()
    assert not app.exception, app.exception
    return app


def settings(app) -> tuple:
    return (app.session_state["top_k"], app.session_state["exclude_query"], app.session_state["label_filter"],
            app.query_params["k"], app.query_params["x"], app.query_params.get("labels"))


def test_a_links_settings_survive_a_visit_to_another_page(dashboard, constructed_case):
    app = opened(dashboard, constructed_case, query_params={"q": constructed_case.query, "box": "64,64,256,256",
                                                            "k": "5", "x": "1", "labels": "photos"})
    expected = (5, True, ["photos"], "5", "1", "photos")
    assert settings(app) == expected
    assert app.slider(key="top_k").value == 5 and app.multiselect(key="label_filter").value == ["photos"]
    for page in ("app_pages/caches.py", "app_pages/map.py", "app_pages/search.py"):
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
    assert settings(app) == expected
    assert app.slider(key="top_k").value == 5 and app.toggle(key="exclude_query").value is True


def test_settings_survive_layer_and_grid_round_trips(dashboard, private_case):
    app = opened(dashboard, private_case)
    app.slider(key="top_k").set_value(4).run()
    app.toggle(key="exclude_query").set_value(True).run()
    app.sidebar.selectbox(key=LAYER_KEY).set_value("blocks.5").run()  # no cache: the workspace is not drawn
    assert not app.exception
    app.sidebar.selectbox(key=LAYER_KEY).set_value("blocks.6").run()
    assert (app.slider(key="top_k").value, app.toggle(key="exclude_query").value) == (4, True)
    grid_key = "grid:tf_efficientnet_lite0:blocks.6"
    app.sidebar.number_input(key=grid_key).set_value(3).run()
    app.sidebar.number_input(key=grid_key).set_value(7).run()
    assert not app.exception
    assert (app.slider(key="top_k").value, app.toggle(key="exclude_query").value) == (4, True)
    assert (app.query_params["k"], app.query_params["x"], app.query_params["grid"]) == ("4", "1", "7")


def test_search_from_a_result_keeps_the_matched_window_as_the_region(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    match = app.session_state["last_search"].outcome.result.matches[0]
    assert match.path == constructed_case.target
    app.button(key="requery-1").click().run()
    assert not app.exception
    assert app.session_state["query"].dataset_path == constructed_case.target
    region = app.session_state["search_region"]
    top, left, height, width = match.window
    expected = np.zeros((7, 7), np.float32)
    expected[top:top + height, left:left + width] = 1
    assert region is not None and np.array_equal(region.grid_mask, expected)
    assert app.query_params["q"] == constructed_case.target and app.query_params["mask"].startswith("7.")


def score_plots(app) -> list:
    return [chart for chart in app.get("plotly_chart") if chart.proto.id.endswith("-score_plot")]


def test_the_figures_are_built_only_while_open_and_stay_open_after_another_page(dashboard, constructed_case):
    app = opened(dashboard, constructed_case, query_params={"q": constructed_case.query, "box": "64,64,256,256"})
    assert app.session_state["last_search"].outcome.result.matches and not score_plots(app)  # closed: not built
    app.session_state[FIGURES_KEY] = True  # as clicking the expander does
    app.run()
    assert len(score_plots(app)) == 1
    for page in ("app_pages/caches.py", "app_pages/search.py"):
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
    assert app.session_state[FIGURES_KEY] is True and len(score_plots(app)) == 1


def gallery_rows(app) -> list[int]:
    """The dataset rows of the filtered gallery, best first."""
    return [match.index for match in app.session_state["filtered_gallery"][1].outcome.result.matches]


def test_a_mode_filter_is_in_the_link_survives_k_pages_and_layers_and_opens_from_the_link(dashboard, private_case):
    app = opened(dashboard, private_case)
    app.slider(key="top_k").set_value(20)
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    app.button(key="find_modes").click().run()
    _, modes = app.session_state["match_modes"]
    assert len(modes) >= 2
    app.button(key="mode-2").click().run()
    assert not app.exception, app.exception
    filtered = gallery_rows(app)
    assert filtered and set(filtered) <= set(modes[1].members)
    assert app.query_params["mode"] == "2"
    app.slider(key="top_k").set_value(3).run()  # the modes group the top 200 whatever k is: still filtered
    assert app.query_params["mode"] == "2" and gallery_rows(app) == filtered[:3]
    app.slider(key="top_k").set_value(20).run()
    app.sidebar.selectbox(key=LAYER_KEY).set_value("blocks.5").run()  # no cache there: no search
    assert not app.exception, app.exception
    app.sidebar.selectbox(key=LAYER_KEY).set_value("blocks.6").run()
    app.switch_page("app_pages/caches.py").run()
    app.switch_page("app_pages/search.py").run()
    assert not app.exception, app.exception
    assert app.query_params["mode"] == "2" and gallery_rows(app) == filtered
    link = {name: app.query_params[name] for name in app.query_params}

    visitor = opened(dashboard, private_case, query_params=link)
    assert gallery_rows(visitor) == filtered and visitor.query_params["mode"] == "2"


def test_a_change_of_k_reuses_the_thumbnails_it_already_made(dashboard, constructed_case, monkeypatch):
    import io

    from PIL import Image

    import vfs.pictures

    made: list[str] = []
    real = vfs.pictures.match_jpegs

    def counted(matches, side, *args, **kwargs):
        made.extend(str(path) for path, _ in matches)
        return real(matches, side, *args, **kwargs)

    monkeypatch.setattr(vfs.pictures, "match_jpegs", counted)  # the page imports it on every run
    app = opened(dashboard, constructed_case)
    app.slider(key="top_k").set_value(5)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    before = app.session_state["last_search"]
    made.clear()
    app.slider(key="top_k").set_value(7).run()
    after = app.session_state["last_search"]
    assert after.number == before.number + 1 and after.thumbnails[:5] == before.thumbnails
    assert len(made) == 2  # only the two new matches' thumbnails were made
    side = max(Image.open(io.BytesIO(after.thumbnails[-1])).size)  # the page's thumbnail side (square images)
    fresh = real([(constructed_case.data / m.path, m.box) for m in after.outcome.result.matches], side)
    assert after.thumbnails == fresh  # the reused ones are those it would make
