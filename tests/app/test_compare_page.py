"""The Compare page through streamlit's AppTest: two layers, another dataset, missing caches."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from notebooks.example_data import sketch
from tests.support.app_cases import ConstructedCase, canvas_rect, draw, run_until, shown
from vfs.cache.indexing import build_index
from vfs.features.images import load_image
from vfs.features.models import load_model

COMPARE = "app_pages/compare.py"


@pytest.fixture(scope="module")
def compare_case(constructed_case: ConstructedCase, tmp_path_factory: pytest.TempPathFactory):
    """The constructed case with a second layer (blocks.5) built, and sketches of it: another dataset."""
    root = tmp_path_factory.mktemp("compare")
    cache_dir = root / "cache"
    shutil.copytree(constructed_case.cache_dir, cache_dir)
    model = load_model()
    build_index(constructed_case.data, model, model.layer("blocks.5"), cache_dir=cache_dir)
    sketches = root / "sketches"
    for image in sorted(constructed_case.data.rglob("*.*")):
        target = sketches / image.parent.name / f"{image.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        sketch(load_image(image)).save(target)
    build_index(sketches, model, model.default_layer, cache_dir=cache_dir)
    return ConstructedCase(constructed_case.data, cache_dir), sketches


def chart(app, key: str) -> dict:
    (found,) = [c for c in app.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(found.proto.spec)


def result_captions(app) -> list[str]:
    return [caption for image in app.image for caption in map(shown, image.captions) if caption[:1].isdigit()]


def searched_then_compare(dashboard, case: ConstructedCase):
    """The Search page with the patch boxed (query excluded), then the Compare page."""
    app = dashboard(case).run()
    app.toggle(key="exclude_query").set_value(True)
    draw(app, canvas_rect(case.patch_box))
    app.run()
    app.switch_page(COMPARE).run()
    assert not app.exception, app.exception
    return app


def test_compare_page_starts_from_the_sidebar_and_asks_for_a_region(dashboard, constructed_case):
    app = dashboard(constructed_case).run()
    app.switch_page(COMPARE).run()
    assert not app.exception
    (setup,) = app.session_state["compare_setups"]
    assert (setup.layer, setup.grid, setup.dataset) == ("blocks.6", 7, constructed_case.data.resolve())
    infos = " ".join(info.value for info in app.info)
    assert "Add at least 1 more setup" in infos and "draw a region on the Search page" in infos


def test_two_layers_side_by_side_with_their_agreement(dashboard, compare_case):
    case, _ = compare_case
    app = searched_then_compare(dashboard, case)
    app.selectbox(key="compare_layer:tf_efficientnet_lite0").set_value("blocks.5")
    app.button(key="compare_add").click().run()
    assert not app.exception and not app.error
    assert [s.layer for s in app.session_state["compare_setups"]] == ["blocks.6", "blocks.5"]
    _, (results, _, errors) = app.session_state["compare_results"]
    assert not errors and [r.setup.layer for r in results] == ["blocks.6", "blocks.5"]
    captions = result_captions(app)
    assert len(captions) == 2 * (case.images - 1)  # k = 12 > the 10 other images; the query is excluded
    firsts = [caption for caption in captions if caption.startswith("1. ")]
    assert len(firsts) == 2 and all(caption.endswith("target.png") for caption in firsts)

    (row,) = app.dataframe[0].value.to_dict("records")
    first, second = (r.result.scores for r in results)
    keep = np.isfinite(first)
    assert row["setups"] == "A · blocks.6 vs B · blocks.5" and row["images"] == case.images - 1
    assert row["Spearman ρ"] == pytest.approx(stats.spearmanr(first[keep], second[keep]).statistic, abs=1e-4)
    assert row["top-12 shared"] == case.images - 1 and row["top-12 Jaccard"] == 1.0

    scatter = chart(app, "compare_scatter")
    hovered = [text for trace in scatter["data"] for text in trace["hovertext"]]
    assert len(hovered) == case.images - 1 and any(text.startswith(case.target) for text in hovered)
    axes = []
    for position in range(2):
        figure = chart(app, f"compare_distribution:{position}")
        histograms = [t for t in figure["data"] if t["type"] == "histogram"]
        assert {t["name"] for t in histograms} == {"pasted", "photos"}
        assert figure["layout"]["showlegend"]  # the colours are named
        axes.append(figure["layout"]["xaxis"]["range"])
    assert axes[0] == axes[1]  # one score axis for both setups


def test_another_dataset_is_searched_with_the_models_features_and_overlaid(dashboard, compare_case):
    case, sketches = compare_case
    app = searched_then_compare(dashboard, case)
    app.text_input(key="compare_dataset").set_value(str(sketches)).run()
    app.button(key="compare_add").click().run()
    assert not app.exception and not app.error
    _, (results, _, _) = app.session_state["compare_results"]
    assert [r.setup.dataset for r in results] == [case.data.resolve(), sketches.resolve()]
    sketched = results[1].result
    assert len(sketched.matches) == case.images  # the query is not a sketch, so nothing is excluded there
    assert not app.dataframe  # no two setups share a dataset
    overlay = chart(app, "compare_overlay")
    names = [trace["name"] for trace in overlay["data"]]
    assert names == [f"A · data ({case.images - 1} images)", f"B · sketches ({case.images} images)"]


def test_a_setup_without_a_cache_offers_to_build_it(dashboard, compare_case, tmp_path):
    case, _ = compare_case
    private = ConstructedCase(case.data, tmp_path / "cache")
    shutil.copytree(case.cache_dir, private.cache_dir)
    app = searched_then_compare(dashboard, private)
    app.selectbox(key="compare_layer:tf_efficientnet_lite0").set_value("blocks.4").run()
    app.number_input(key="compare_grid:tf_efficientnet_lite0:blocks.4").set_value(2)
    app.button(key="compare_add").click().run()
    setup = app.session_state["compare_setups"][1]
    assert (setup.layer, setup.grid) == ("blocks.4", 2)
    _, (results, _, _) = app.session_state["compare_results"]
    assert len(results) == 1  # only the setup with a cache is searched meanwhile
    next(button for button in app.button if button.label.startswith("Build its cache")).click().run()
    run_until(app, lambda a: len(a.session_state["compare_results"][1][0]) == 2)
    assert not app.exception
    _, (results, _, _) = app.session_state["compare_results"]
    assert results[1].result.grid_mask.shape == (2, 2)
    app.button(key="compare_remove:1").click().run()
    assert len(app.session_state["compare_setups"]) == 1


def test_read_only_deployment_says_how_to_build_a_missing_cache(dashboard, compare_case):
    case, _ = compare_case
    app = dashboard(case, VFS_READ_ONLY="1").run()
    draw(app, canvas_rect(case.patch_box))
    app.run()
    app.switch_page(COMPARE).run()
    app.selectbox(key="compare_layer:tf_efficientnet_lite0").set_value("blocks.3").run()
    app.button(key="compare_add").click().run()
    assert not app.exception
    assert any("read-only" in shown(warning.value) and "vfs index" in shown(warning.value) for warning in app.warning)
    assert not any(button.label.startswith("Build its cache") for button in app.button)
