"""The Dataset map page through streamlit's AppTest: the treemap, choosing a cluster, the filtered gallery."""

from __future__ import annotations

import json

from tests.support.app_cases import ConstructedCase, canvas_rect, draw, shown
from vfs.analysis.dataset_map import ROOT

MAP = "app_pages/map.py"


def treemap(app) -> dict:
    (chart,) = [c for c in app.get("plotly_chart") if c.proto.id.endswith("-map_chart")]
    (trace,) = json.loads(chart.proto.spec)["data"]
    return trace


def gallery_paths(app) -> list[str]:
    return [match.path for match in app.session_state["filtered_gallery"][1].outcome.result.matches]


def result_captions(app) -> list[str]:
    return [caption for image in app.image for caption in map(shown, image.captions) if caption[:1].isdigit()]


def test_map_shows_nested_clusters_of_every_image(dashboard, constructed_case):
    app = dashboard(constructed_case).run()
    app.switch_page(MAP).run()
    assert not app.exception, app.exception
    trace = treemap(app)
    ids, parents, values = trace["ids"], trace["parents"], trace["values"]
    assert trace["type"] == "treemap" and ids[0] == ROOT and values[0] == constructed_case.images
    value = dict(zip(ids, values))
    for cluster_id in ids:
        children = [value[i] for i, parent in zip(ids, parents) if parent == cluster_id]
        assert not children or sum(children) == value[cluster_id]
    picker = app.selectbox(key="map_cluster")
    assert picker.options[0] == "All images (11 images)" and len(picker.options) == len(ids)
    # beside the map: each top-level cluster's central images, every image at most once per cluster
    assert sum(1 for image in app.image for _ in image.captions) >= len([p for p in parents if p == ROOT])
    assert "Search on the Search page to mark its results here" in " ".join(c.value for c in app.caption)


def test_choosing_a_cluster_filters_the_search_gallery_until_cleared(dashboard, constructed_case):
    app = dashboard(constructed_case).run()
    app.switch_page(MAP).run()
    trace = treemap(app)
    first = next(i for i, p in zip(trace["ids"], trace["parents"]) if p == ROOT)
    app.selectbox(key="map_cluster").set_value(first).run()
    assert not app.exception
    subset = app.session_state["gallery_subset"]
    assert subset.description == f"cluster {first}" and len(subset.paths) == trace["values"][trace["ids"].index(first)]
    central = [caption for image in app.image for caption in map(shown, image.captions)]
    assert central and all(any(caption.startswith(path.rsplit("/", 1)[-1]) for path in subset.paths)
                           for caption in central)
    assert "gallery now shows" in shown(app.info[0].value)

    app.switch_page("app_pages/search.py").run()
    app.switch_page(MAP).run()
    assert app.selectbox(key="map_cluster").value == first  # still chosen after another page
    app.switch_page("app_pages/search.py").run()
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    assert not app.exception
    assert f"Filtered to cluster {first}" in shown(app.info[0].value)
    assert set(gallery_paths(app)) == set(subset.paths)  # k = 12 is more than the cluster holds
    assert len(result_captions(app)) == len(subset.paths)
    app.button(key="clear_subset").click().run()
    assert app.session_state["gallery_subset"] is None
    assert len(result_captions(app)) == constructed_case.images

    app.switch_page(MAP).run()
    assert app.selectbox(key="map_cluster").value == ROOT  # cleared on the Search page, cleared here

    app.selectbox(key="map_cluster").set_value(first).run()
    app.slider(key="map_top").set_value(2).run()  # another map: the filter names a cluster of the old one
    assert app.selectbox(key="map_cluster").value == ROOT
    assert f"filtered to cluster {first} of another map" in shown(app.info[0].value)
    app.button(key="map_clear_earlier").click().run()
    assert app.session_state["gallery_subset"] is None


def test_the_search_top_k_is_marked_on_the_map(dashboard, constructed_case):
    app = dashboard(constructed_case).run()
    app.slider(key="top_k").set_value(3)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    top = [match.path for match in app.session_state["last_search"].outcome.result.matches]
    app.switch_page(MAP).run()
    assert not app.exception
    trace = treemap(app)
    texts = dict(zip(trace["ids"], trace["text"]))
    assert "3 of the top 3" in texts[ROOT]
    marked = {i for i, text in texts.items() if "of the top 3" in text}
    widths = dict(zip(trace["ids"], trace["marker"]["line"]["width"]))
    assert all(widths[i] == 4 for i in marked - {ROOT})
    assert "The Search page's top 3 fall in" in " ".join(c.value for c in app.caption)
    assert len(top) == 3


def test_map_without_a_cache_says_where_to_build_it(dashboard, constructed_case, tmp_path):
    app = dashboard(ConstructedCase(constructed_case.data, tmp_path / "empty"), VFS_READ_ONLY="1").run()
    app.switch_page(MAP).run()
    assert not app.exception
    assert "no feature cache" in shown(app.info[0].value)


def test_a_cluster_filter_is_in_the_link_and_opens_from_it_with_its_map(dashboard, private_case):
    app = dashboard(private_case).run()
    app.switch_page(MAP).run()
    trace = treemap(app)
    first = next(i for i, p in zip(trace["ids"], trace["parents"]) if p == ROOT)
    app.slider(key="map_top").set_value(3).run()  # not the default map: the link must say which one
    trace = treemap(app)
    first = next(i for i, p in zip(trace["ids"], trace["parents"]) if p == ROOT)
    app.selectbox(key="map_cluster").set_value(first).run()
    subset = app.session_state["gallery_subset"]
    app.switch_page("app_pages/search.py").run()
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    assert not app.exception, app.exception
    assert app.query_params["cluster"] == f"3,24:{first}"
    app.sidebar.selectbox(key="layer:tf_efficientnet_lite0").set_value("blocks.5").run()
    app.sidebar.selectbox(key="layer:tf_efficientnet_lite0").set_value("blocks.6").run()
    assert not app.exception, app.exception
    assert app.query_params["cluster"] == f"3,24:{first}" and set(gallery_paths(app)) <= subset.paths
    link = {name: app.query_params[name] for name in app.query_params}

    visitor = dashboard(private_case, query_params=link).run()
    assert not visitor.exception, visitor.exception
    assert visitor.session_state["gallery_subset"] == subset
    assert gallery_paths(visitor) == gallery_paths(app)
    visitor.switch_page(MAP).run()
    assert visitor.slider(key="map_top").value == 3 and visitor.selectbox(key="map_cluster").value == first

    broken = dashboard(private_case, query_params={**link, "cluster": "3,24:9.9"}).run()
    assert "gallery_subset" not in broken.session_state
    assert "names cluster 9.9" in shown(broken.warning[0].value)
