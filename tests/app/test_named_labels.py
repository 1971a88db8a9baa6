"""Named labels on an imagenette-style dataset: folders named by WordNet id, shown by name on the Search page.

The dataset is the constructed case laid out as imagenette ships it (``n01440764/ILSVRC2012_val_….JPEG``),
once with imagenette's ``classes.csv`` at its root and once without, where the names come from timm's
ImageNet table. The gallery captions, the label vote, the label filter and every plot's legend must say
"tench", never ``n01440764``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from app_pages.shared.common import FIGURES_KEY
from tests.support.app_cases import ConstructedCase, canvas_rect, draw, make_constructed_dataset, shown
from vfs.cache.indexing import build_index
from vfs.features import label_names
from vfs.features.models import load_model

#: The constructed case's folders as WordNet ids, with the names imagenette's classes.csv gives them.
SYNSETS = {"pasted": ("n01440764", 0, "tench"), "photos": ("n02102040", 217, "English springer")}
NAMES = sorted(name for _, _, name in SYNSETS.values())
TOP_K = 4


def make_imagenette_style(constructed: Path, root: Path, classes_csv: bool) -> ConstructedCase:
    """``constructed`` copied to ``root`` under WordNet-id folders and ILSVRC file names (JPEGs, as shipped)."""
    renamed = {}
    number = 0
    for folder, (synset, _, _) in SYNSETS.items():
        (root / synset).mkdir(parents=True)
        for photo in sorted((constructed / folder).iterdir()):
            number += 1
            name = f"{synset}/ILSVRC2012_val_{number:08d}.JPEG"
            with Image.open(photo) as image:
                image.convert("RGB").save(root / name, quality=95)
            renamed[f"{folder}/{photo.name}"] = name
    if classes_csv:
        rows = [f"{synset},{index},{name}" for synset, index, name in SYNSETS.values()]
        (root / "classes.csv").write_text("\n".join(["synset,imagenet_index,name", *rows]) + "\n")
    case = ConstructedCase(root, root.parent / "cache")
    return ConstructedCase(case.data, case.cache_dir, query=renamed[case.query], target=renamed[case.target])


@pytest.fixture(scope="module", params=["classes.csv", "timm's table"])
def imagenette_case(request, tmp_path_factory: pytest.TempPathFactory) -> ConstructedCase:
    root = tmp_path_factory.mktemp("imagenette")
    make_constructed_dataset(root / "constructed")
    case = make_imagenette_style(root / "constructed", root / "data", classes_csv=request.param == "classes.csv")
    model = load_model()
    build_index(case.data, model, model.default_layer, cache_dir=case.cache_dir)
    return case


@pytest.fixture
def names_source(imagenette_case: ConstructedCase, monkeypatch: pytest.MonkeyPatch) -> str:
    """With classes.csv, timm's table is hidden: the names can then only have come from the file."""
    if (imagenette_case.data / "classes.csv").exists():
        monkeypatch.setattr(label_names, "wordnet_names", dict)
        return "classes.csv"
    assert label_names.wordnet_names()["n01440764"] == "tench"
    return "timm"


def trace_names(app, key: str, in_legend: bool = False) -> set[str]:
    """The names of a plot's traces (``in_legend``: of those its legend lists, not the histogram's hover bars)."""
    (found,) = [c for c in app.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    traces = json.loads(found.proto.spec)["data"]
    return {trace.get("name") for trace in traces if not in_legend or trace.get("showlegend", True)}


def result_captions(app) -> list[str]:
    return [caption for image in app.image for caption in map(shown, image.captions) if caption[:1].isdigit()]


def assert_no_wordnet_id(texts) -> None:
    for text in texts:
        assert not any(synset in str(text) for synset, _, _ in SYNSETS.values()), text


def test_gallery_vote_filter_and_plots_show_names_not_wordnet_ids(dashboard, imagenette_case, names_source):
    app = dashboard(imagenette_case).run()
    app.session_state[FIGURES_KEY] = True  # the figures are built only while their expander is open
    app.slider(key="top_k").set_value(TOP_K)
    draw(app, canvas_rect(imagenette_case.patch_box))
    app.run()
    assert not app.exception, app.exception

    captions = result_captions(app)
    assert len(captions) == TOP_K and all(any(f" · {name} · " in c for name in NAMES) for c in captions), captions
    assert any(" · tench · " in caption for caption in captions)  # the target, which holds the query's patch
    vote = [shown(m.value) for m in app.markdown if "**Labels of the top" in m.value]
    assert len(vote) == 1 and "tench" in vote[0], vote
    consistency = [shown(m.value) for m in app.markdown if "(the query image itself left out)" in m.value]
    assert len(consistency) == 1 and "labelled **tench**" in consistency[0], consistency
    assert app.multiselect(key="label_filter").options == NAMES
    assert trace_names(app, "score_plot", in_legend=True) == set(NAMES)  # the histogram: one stack per label
    assert trace_names(app, "label_plot") == set(NAMES)  # one box per label, named on its axis
    assert "precision of tench" in trace_names(app, "precision_plot", in_legend=True)
    assert_no_wordnet_id([*captions, *vote, *consistency])

    app.multiselect(key="label_filter").set_value(["English springer"]).run()
    assert not app.exception, app.exception
    filtered = result_captions(app)
    assert filtered and all(" · English springer · " in caption for caption in filtered), filtered
    gallery_line = [shown(c.value) for c in app.caption if shown(c.value).startswith(f"Top {len(filtered)} of ")]
    assert len(gallery_line) == 1 and "label: English springer" in gallery_line[0], gallery_line
    assert_no_wordnet_id([*filtered, *gallery_line])
