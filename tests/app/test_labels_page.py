"""The Search page's label panel through streamlit's AppTest: vote, label consistency, filter, per-label plot."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app_pages.shared.common import FIGURES_KEY
from tests.support.app_cases import canvas_rect, draw, shown
from vfs.analysis.labels import precision_at_k
from vfs.cache.feature_cache import FeatureCache


def plotted_values(values) -> np.ndarray:
    """Plotly writes numeric arrays either as lists or as {"dtype", "bdata"} (base64)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).astype(float)
    return np.asarray(values, dtype=float)


def chart(app, key: str) -> dict:
    (found,) = [c for c in app.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(found.proto.spec)


def result_captions(app) -> list[str]:
    return [caption for image in app.image for caption in map(shown, image.captions) if caption[:1].isdigit()]


def searched(dashboard, case, top_k: int = 4):
    app = dashboard(case).run()
    app.session_state[FIGURES_KEY] = True  # the figures are built only while their expander is open
    app.slider(key="top_k").set_value(top_k)
    draw(app, canvas_rect(case.patch_box))
    app.run()
    assert not app.exception, app.exception
    return app


def test_every_search_shows_its_label_vote_and_consistency(dashboard, constructed_case):
    app = searched(dashboard, constructed_case)
    cache = FeatureCache.open(app.session_state["selection"].cache_path)
    result = app.session_state["last_search"].outcome.result
    labels = [match.label for match in result.matches]
    markdown = " ".join(m.value for m in app.markdown)
    pasted = labels.count("pasted")
    assert f"**Labels of the top 4:** {max(pasted, 4 - pasted)} of 4 are" in markdown
    # the query (pasted/query.png) is left out of its own label's precision
    scores = result.scores.copy()
    scores[cache.index_of(constructed_case.query)] = -np.inf
    expected = precision_at_k(scores, cache.labels, "pasted", 4)
    assert f"{expected:.0%} of the top 4 (the query image itself left out) are labelled **pasted**" in markdown
    curve = chart(app, "precision_plot")["data"][0]
    assert plotted_values(curve["y"])[3] == pytest.approx(expected)
    per_label = chart(app, "label_plot")["data"]
    assert {trace["name"] for trace in per_label} == {"pasted", "photos"}
    assert {trace["type"] for trace in per_label} == {"box"}
    app.segmented_control(key="label_plot_kind").set_value("violin").run()
    assert {trace["type"] for trace in chart(app, "label_plot")["data"]} == {"violin"}


def test_label_filter_shows_the_best_matches_among_the_chosen_labels(dashboard, constructed_case):
    app = searched(dashboard, constructed_case, top_k=3)
    assert app.multiselect(key="label_filter").options == ["pasted", "photos"]
    app.multiselect(key="label_filter").set_value(["photos"]).run()
    assert any("**Labels of the top 3 (before filtering):**" in m.value for m in app.markdown)
    captions = result_captions(app)
    assert len(captions) == 3 and all(" · photos · " in caption for caption in captions)
    labels = FeatureCache.open(app.session_state["selection"].cache_path).labels
    scores = app.session_state["last_search"].outcome.result.scores
    photos = sorted((s for s, label in zip(scores, labels) if label == "photos"), reverse=True)[:3]
    assert [float(c.split(" ")[1]) for c in captions] == pytest.approx([round(s, 3) for s in photos], abs=1e-3)
    assert any(shown(c.value).startswith(f"Top 3 of {constructed_case.images:,} images · label: photos (search #")
               for c in app.caption)  # the gallery says what it is filtered to
    app.multiselect(key="label_filter").set_value([]).run()
    assert any(" · pasted · " in caption for caption in result_captions(app))
    assert not any("label: photos" in shown(c.value) for c in app.caption)
