"""The dashboard through streamlit's AppTest: pages, sidebar, drawing, links, uploads, builds."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app_pages.shared.common import FIGURES_KEY
from tests.support.app_cases import (
    ConstructedCase,
    canvas_key,
    canvas_rect,
    canvas_stroke,
    draw,
    field_png,
    open_picker,
    run_until,
    shown,
    upload,
)
from vfs.cache.catalog import list_caches
from vfs.cache.indexing import IndexSummary, Progress
from vfs.dashboard.indexing_jobs import JobState
from vfs.dashboard.links import from_params

REPOSITORY = Path(__file__).resolve().parents[2]


def gallery_captions(app) -> list[str]:
    """Captions of the result thumbnails, best first."""
    return [caption for image in app.image for caption in map(shown, image.captions) if caption[:1].isdigit()]


def plotted_values(values) -> np.ndarray:
    """Plotly writes numeric arrays either as lists or as {"dtype", "bdata"} (base64)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).astype(float)
    return np.asarray(values, dtype=float)


def search_ready(app) -> bool:
    return any(key.startswith("canvas:") for key in app.session_state)


def opened(dashboard, case: ConstructedCase, **kwargs):
    app = dashboard(case, **kwargs).run()
    assert not app.exception, app.exception
    return app


def test_search_page_opens_with_the_first_image_on_the_canvas(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    assert app.session_state["query"].dataset_path == constructed_case.query
    assert canvas_key(app) in app.session_state
    assert "Draw on the query image" in shown(app.info[0].value)
    assert app.query_params["q"] == constructed_case.query
    assert app.query_params["layer"] == "blocks.6" and app.query_params["grid"] == "7"


def test_drawn_box_finds_the_pasted_patch_in_the_target(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    assert not app.exception
    captions = gallery_captions(app)
    assert captions[0].startswith("1.") and captions[0].endswith("target.png")
    assert not any(caption.endswith("query.png") for caption in captions)
    best = app.session_state["last_search"].outcome.result.matches[0]
    assert tuple(best.box) == constructed_case.target_box
    assert app.query_params["box"] == ",".join(str(v) for v in constructed_case.patch_box)


def test_brush_stroke_searches_with_grid_weights_and_finds_the_target(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_stroke([(90, 100), (160, 160), (230, 220)], width=60))
    app.run()
    assert gallery_captions(app)[0].endswith("target.png")
    shared, problems = from_params(app.query_params)
    assert not problems and shared.region is not None and shared.region.grid_mask is not None
    weights = shared.region.grid_mask  # 64-pixel cells; the stroke runs through cell (2, 2) only near its middle
    assert weights[2, 2] > 0.8 and weights[0].sum() == 0 and weights[6, 6] == 0


def test_clear_forgets_the_region_until_the_next_drawing(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    assert gallery_captions(app) and "box" in app.query_params
    app.button(key="clear").click().run()
    assert not gallery_captions(app) and "box" not in app.query_params
    assert "Draw on the query image" in shown(app.info[0].value)
    draw(app, canvas_rect((0, 0, 128, 128)))
    app.run()
    assert gallery_captions(app) and app.query_params["box"] == "0,0,128,128"


def test_score_plot_holds_every_image_score(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.session_state[FIGURES_KEY] = True  # the figures are built only while their expander is open
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    (chart,) = [chart for chart in app.get("plotly_chart") if chart.proto.id.endswith("-score_plot")]
    figure = json.loads(chart.proto.spec)
    histograms = [trace for trace in figure["data"] if trace["type"] == "histogram"]
    plotted = sorted(np.concatenate([plotted_values(t["x"]) for t in histograms]))
    expected = sorted(app.session_state["last_search"].outcome.result.scores.astype(float))
    assert len(plotted) == constructed_case.images
    np.testing.assert_allclose(plotted, expected, atol=1e-5)
    assert {trace["name"] for trace in histograms} == {"pasted", "photos"}  # coloured by label
    (files,) = [trace for trace in figure["data"] if trace["type"] == "bar"]
    assert any(constructed_case.target in text for text in files["hovertext"])  # hovering names the files


def test_link_reproduces_the_search_for_a_collaborator(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.toggle(key="exclude_query").set_value(True)
    app.slider(key="top_k").set_value(5)
    draw(app, canvas_stroke([(80, 200), (240, 90)], width=40))
    app.run()
    link = dict(app.query_params)
    assert link["k"] == "5" and link["x"] == "1" and "mask" in link

    collaborator = opened(dashboard, constructed_case, query_params=link)
    assert gallery_captions(collaborator) == gallery_captions(app)
    mine = app.session_state["last_search"].outcome.result
    theirs = collaborator.session_state["last_search"].outcome.result
    np.testing.assert_array_equal(mine.scores, theirs.scores)
    assert dict(collaborator.query_params) == link
    assert not collaborator.warning


def test_broken_and_stale_links_explain_themselves(dashboard, constructed_case):
    app = opened(dashboard, constructed_case, query_params={
        "layer": "blocks.99", "q": "pasted/missing.png", "grid": "many", "mask": "7.not-base64!"})
    message = shown(app.warning[0].value)
    assert "grid='many'" in message and "mask=" in message
    assert "blocks.99" in message and "pasted/missing.png" in message
    assert app.session_state["query"].dataset_path == constructed_case.query  # fell back to the default
    assert app.query_params["layer"] == "blocks.6"


def test_link_naming_a_missing_dataset_says_so(dashboard, constructed_case, tmp_path):
    app = opened(dashboard, constructed_case, query_params={"data": str(tmp_path / "gone")})
    assert "does not exist" in shown(app.sidebar.error[0].value)
    assert "Choose a dataset folder" in shown(app.info[0].value)


def test_uploads_are_checked_and_a_good_one_becomes_the_query(dashboard, private_case):
    constructed_case = private_case  # the upload is kept in its cache folder
    app = opened(dashboard, constructed_case)
    open_picker(app)
    app.run()
    upload(app, "notes.png", b"this is not an image")
    assert "notes.png: not a recognised image format" in shown(app.error[0].value)
    upload(app, "huge.png", field_png((8000, 6000)))
    assert "exceeds the limit" in shown(app.error[0].value)
    upload(app, "heavy.png", b"\x89PNG" + bytes(21 * 1024 * 1024))
    assert "limited to 20 MB" in shown(app.error[0].value)
    assert app.session_state["query"].dataset_path == constructed_case.query  # unchanged by bad uploads

    upload(app, "field.png", field_png((300, 200)))
    assert not app.error
    query = app.session_state["query"]
    assert query.name == "field.png" and query.dataset_path is None
    draw(app, canvas_rect((20, 20, 150, 120), image_side=300))
    app.run()
    assert gallery_captions(app)
    # the upload is kept on the server under its digest, and the link names it
    link = dict(app.query_params)
    assert "q" not in link and link["box"] == "20,20,150,120"
    assert (constructed_case.cache_dir / "uploads" / link["u"]).read_bytes() == field_png((300, 200))

    collaborator = opened(dashboard, constructed_case, query_params=link)
    assert collaborator.session_state["query"].upload_id == link["u"]
    assert gallery_captions(collaborator) == gallery_captions(app)
    assert not collaborator.warning
    reader = opened(dashboard, constructed_case, query_params=link, VFS_READ_ONLY="1")  # opens, keeps nothing new
    assert gallery_captions(reader) == gallery_captions(app) and not reader.warning


def test_a_read_only_deployment_keeps_no_upload_and_says_links_cannot_name_it(dashboard, constructed_case):
    app = opened(dashboard, constructed_case, VFS_READ_ONLY="1")
    open_picker(app)
    app.run()
    upload(app, "field.png", field_png((300, 200)))
    draw(app, canvas_rect((20, 20, 150, 120), image_side=300))
    open_picker(app)  # the caption below is in the picker
    app.run()
    assert gallery_captions(app)
    assert "u" not in app.query_params and "box" not in app.query_params
    assert any("uploads are not kept" in shown(caption.value) for caption in app.caption)
    assert not (constructed_case.cache_dir / "uploads").exists()

    gone = opened(dashboard, constructed_case, query_params={"u": "0" * 32}, VFS_READ_ONLY="1")
    assert "no longer on this server" in shown(gone.warning[0].value)
    assert gone.session_state["query"].dataset_path == constructed_case.query  # the page still opens


def test_a_result_becomes_the_next_query(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    app.button(key="requery-2").click().run()
    assert app.session_state["query"].dataset_path == constructed_case.target
    assert app.query_params["q"] == constructed_case.target
    assert "box" not in app.query_params  # a new query starts without a region


def test_details_dialog_shows_the_heatmap(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(constructed_case.patch_box))
    app.run()
    app.button(key="details-1").click().run()
    assert not app.exception
    captions = [caption for image in app.image for caption in map(shown, image.captions)]
    assert "Best window" in captions
    heat = next(c for c in captions if c.startswith("Every window position"))
    assert "(bright)" in heat
    assert any("pasted/target.png" in shown(markdown.value) for markdown in app.markdown)


def test_index_page_lists_the_caches(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    app.switch_page("app_pages/caches.py").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["layer"]) == ["blocks.6"]
    assert list(table["images"]) == [constructed_case.images]
    assert list(table["dataset"]) == [str(constructed_case.data.resolve())]
    assert bool(table["in use"].iloc[0])


def test_index_page_deletes_a_cache_after_confirmation(dashboard, private_case):
    app = opened(dashboard, private_case)
    app.switch_page("app_pages/caches.py").run()
    (cache,) = list_caches(private_case.cache_dir)
    delete = next(button for button in app.button if button.label == "Delete…")
    delete.click().run()
    assert cache.path.exists() and "Delete" in shown(app.warning[0].value)
    next(button for button in app.button if button.label == "Yes, delete it").click().run()
    assert not cache.path.exists()
    assert "Deleted" in shown(app.info[0].value)
    assert list_caches(private_case.cache_dir) == []


def test_index_page_builds_the_sidebar_selection(dashboard, private_case):
    app = opened(dashboard, private_case)
    app.switch_page("app_pages/caches.py").run()
    app.sidebar.number_input(key="grid:tf_efficientnet_lite0:blocks.6").set_value(3).run()
    assert list(app.dataframe[0].value["grid"]) == ["7×7"]
    next(button for button in app.button if button.label == "Build or update this cache").click().run()
    run_until(app, lambda a: len(a.dataframe[0].value) == 2 and any("Last build finished" in shown(c.value)
                                                                     for c in a.caption))
    table = app.dataframe[0].value
    assert sorted(table["grid"]) == ["3×3", "7×7"] and list(table["images"]) == [private_case.images] * 2
    assert table.set_index("grid")["in use"]["3×3"]


def test_switching_layers_builds_a_missing_cache_and_reuses_built_ones(dashboard, private_case):
    from app_pages.shared.common import index_jobs

    app = opened(dashboard, private_case)
    first = app.session_state["selection"]
    app.sidebar.selectbox(key="layer:tf_efficientnet_lite0").set_value("blocks.5").run()
    assert not app.exception
    selection = app.session_state["selection"]
    assert selection.layer.name == "blocks.5" and selection.model is first.model  # the model is not reloaded
    job = index_jobs().get(selection.cache_path)
    assert job is not None
    run_until(app, lambda a: index_jobs().get(selection.cache_path).state is not JobState.RUNNING
              and search_ready(a))
    assert job.state is JobState.DONE and job.summary.images == private_case.images
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    assert gallery_captions(app)

    app.sidebar.selectbox(key="layer:tf_efficientnet_lite0").set_value("blocks.6").run()
    assert index_jobs().get(first.cache_path) is None  # an existing cache is used as it is
    assert search_ready(app)


def test_a_build_in_progress_shows_its_progress_and_can_be_cancelled(dashboard, constructed_case, tmp_path,
                                                                     monkeypatch):
    from app_pages.shared.common import index_jobs

    def slow_build(data, model, layer, grid, cache_dir, progress, cancel, **build_options):  # a long index build
        progress(Progress(3, 11, 1.5))
        cancel.wait(60)
        return IndexSummary(Path(cache_dir), [], 0, 0, 0, 0, cancelled=cancel.is_set())

    monkeypatch.setattr("vfs.dashboard.selection.build_index", slow_build)
    app = opened(dashboard, ConstructedCase(constructed_case.data, tmp_path / "cache"))
    (bar,) = app.get("progress")
    assert "3/11 images (27%) · 2.0 img/s · ETA 00:04" in bar.proto.text
    app.button(key=f"cancel:page:{app.session_state['selection'].cache_path}").click().run()
    job = index_jobs().get(app.session_state["selection"].cache_path)
    assert job.wait(10) and job.state is JobState.CANCELLED
    app.run()
    assert "Indexing was cancelled" in shown(app.warning[0].value)
    assert any(button.label == "Resume indexing" for button in app.button)


def test_read_only_deployment_reports_a_missing_cache_instead_of_building(dashboard, constructed_case, tmp_path):
    from app_pages.shared.common import index_jobs

    case = ConstructedCase(constructed_case.data, tmp_path / "empty-cache")
    app = opened(dashboard, case, VFS_READ_ONLY="1")
    assert "read-only" in shown(app.error[0].value) and "vfs index" in shown(app.error[0].value)
    assert index_jobs().get(app.session_state["selection"].cache_path) is None
    assert not (tmp_path / "empty-cache").exists()


def test_fresh_machine_opens_on_the_demo_photos(dashboard, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clothing").symlink_to(REPOSITORY / "data" / "clothing")
    monkeypatch.chdir(tmp_path)  # data/clothing and data/cache are relative to the working directory
    app = dashboard(None).run()
    # the demo is built at once where it takes under 20 s; a slower (or busy) machine asks first, with the cost
    for button in app.button:
        if button.label == "Build this cache":
            button.click()
    run_until(app, search_ready, timeout=300)
    assert not app.exception
    demo = sorted(p.relative_to(tmp_path / "data" / "clothing").as_posix()
                  for p in (tmp_path / "data" / "clothing").rglob("*.jpg"))
    assert len(demo) == 400
    assert app.session_state["query"].dataset_path == demo[0]
    assert app.session_state["selection"].cache_path.resolve().is_relative_to(tmp_path / "data" / "cache")
    draw(app, canvas_rect((100, 100, 300, 300), image_side=512))
    app.run()
    assert len(gallery_captions(app)) == 12
    shown = " ".join(element.value for element in app.markdown)
    assert "Labels of the top 12" in shown and "Label consistency" in shown and "dress" in shown


def test_the_drawing_is_back_on_the_canvas_as_drawn_after_visiting_another_page(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    stroke = canvas_stroke([(80, 200), (240, 90)], width=40)
    draw(app, stroke)
    app.run()
    drawn = app.session_state["search_region"]
    captions = gallery_captions(app)
    assert drawn is not None and captions

    app.switch_page("app_pages/caches.py").run()
    assert not app.exception
    app.switch_page("app_pages/search.py").run()
    assert not app.exception
    assert app.session_state["restored_objects"] == [stroke]  # the stroke itself, not shaded grid cells
    assert app.session_state["seed_region"] is None
    assert app.session_state["search_region"] == drawn and gallery_captions(app) == captions


def test_removing_a_links_drawing_clears_its_region_results_and_address(dashboard, constructed_case):
    app = opened(dashboard, constructed_case)
    draw(app, canvas_stroke([(80, 200), (240, 90)], width=40))
    app.run()
    link = dict(app.query_params)
    collaborator = opened(dashboard, constructed_case, query_params=link)
    assert gallery_captions(collaborator) and "mask" in collaborator.query_params
    draw(collaborator)  # every object deleted on the canvas, the link's cells included
    collaborator.run()
    assert not collaborator.exception
    assert not gallery_captions(collaborator) and "mask" not in collaborator.query_params
    assert collaborator.session_state["seed_region"] is None


def test_a_cache_with_a_shortlist_offers_approximate_search_and_says_so(dashboard, private_case, monkeypatch):
    from vfs.feature_search import FeatureSearch

    pytest.importorskip("faiss")
    FeatureSearch(private_case.data, cache_dir=private_case.cache_dir).build_shortlist()
    small = opened(dashboard, private_case)
    assert "approximate" not in [toggle.key for toggle in small.toggle]  # too small for the shortlist to win
    monkeypatch.setattr("vfs.dashboard.searching.APPROXIMATE_FROM", 1)
    app = opened(dashboard, private_case)
    assert app.toggle(key="approximate").value is True  # offered only where it is faster, so on
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(private_case.patch_box))
    app.run()
    assert not app.exception
    assert gallery_captions(app)[0].endswith("target.png")
    captions = [shown(caption.value) for caption in app.caption]
    assert any(c.startswith("Approximate: ") and "shortlisted of" in c and "scored exactly" in c for c in captions)
    assert any(", approximate (search #" in c for c in captions)
    assert app.session_state["last_search"].outcome.result.approximate
    assert app.query_params["a"] == "1"

    collaborator = opened(dashboard, private_case, query_params=dict(app.query_params))
    assert collaborator.toggle(key="approximate").value is True
    assert collaborator.session_state["last_search"].outcome.result.approximate
    app.toggle(key="approximate").set_value(False).run()
    assert app.query_params["a"] == "0"  # an exact search stays exact for whoever opens the link

    shutil.rmtree(private_case.cache_dir / next(private_case.cache_dir.glob("*/*/regions")).relative_to(
        private_case.cache_dir))
    no_index = opened(dashboard, private_case, query_params={**dict(collaborator.query_params), "a": "1"})
    assert "asks for approximate search" in shown(no_index.warning[0].value)
    assert not no_index.session_state["last_search"].outcome.result.approximate


def test_index_page_builds_the_shortlist_for_approximate_search(dashboard, private_case):
    pytest.importorskip("faiss")
    read_only = opened(dashboard, private_case, VFS_READ_ONLY="1")
    read_only.switch_page("app_pages/caches.py").run()
    assert any("has no shortlist" in shown(caption.value) for caption in read_only.caption)
    assert "Build the shortlist" not in [button.label for button in read_only.button]

    app = opened(dashboard, private_case)
    app.switch_page("app_pages/caches.py").run()
    assert any("has no shortlist" in shown(caption.value) for caption in app.caption)
    build = next(button for button in app.button if button.label == "Build the shortlist")
    build.click().run()
    assert not app.exception
    assert any("Shortlist ready" in shown(caption.value) for caption in app.caption)
    app.switch_page("app_pages/search.py").run()
    assert "approximate" not in [toggle.key for toggle in app.toggle]  # a small cache searches exactly


def test_a_damaged_cache_is_reported_on_every_page_that_reads_it(dashboard, private_case):
    shard = next(private_case.cache_dir.glob("*/*/*.arrow"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated behind the dashboard's back
    app = opened(dashboard, private_case)
    assert any("rerun `vfs index` to rebuild it" in shown(error.value) for error in app.error)
    for page in ("app_pages/units.py", "app_pages/map.py", "app_pages/caches.py"):
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
        assert any("rebuild" in shown(error.value) for error in app.error), page
