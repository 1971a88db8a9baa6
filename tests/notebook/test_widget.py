"""The notebook widget's Python side: region decoding, state, and the payload the browser shows."""

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

import vfs
from tests.support.data import package_photo
from vfs.errors import ImageError, MaskError
from vfs.features.geometry import box_to_grid, mask_to_grid
from vfs.notebook.gallery import gallery
from vfs.notebook.widget import (
    PREVIEW_SIDE,
    DrawnRegion,
    SearchWidget,
    box_mask,
    decode_data_url,
    decode_region,
    display_size,
    encode_region,
    match_payload,
    png_data_url,
    widget,
)


def drawn_png(size: tuple[int, int], rectangle: tuple[int, int, int, int]) -> str:
    """What the browser's canvas exports: transparent, with an opaque painted rectangle."""
    picture = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(picture).rectangle(rectangle, fill=(255, 72, 0, 255))
    return png_data_url(picture)


def decoded_jpeg(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# --- decoding, no widget needed ---------------------------------------------------------------

def test_data_url_round_trip_and_refusals():
    url = png_data_url(Image.new("L", (3, 2)))
    assert Image.open(io.BytesIO(decode_data_url(url))).size == (3, 2)
    with pytest.raises(MaskError, match="image/png"):
        decode_data_url("data:image/jpeg;base64,AAAA")
    with pytest.raises(MaskError, match="base64"):
        decode_data_url("data:image/png;base64,@@@")


def test_display_size_fits_the_long_side():
    assert display_size((256, 170)) == (PREVIEW_SIDE, 298)
    assert display_size((100, 400)) == (112, PREVIEW_SIDE)


def test_box_mask_averages_to_the_grid_box_exactly():
    box = (10.5, 7.25, 63.3, 41.9)
    mask = box_mask(box, (100, 60))
    assert mask.shape == (60, 100) and mask[20, 30] == 1.0 and mask[20, 10] == pytest.approx(0.5)
    np.testing.assert_allclose(mask_to_grid(mask, 7), box_to_grid(box, (100, 60), 7), atol=1e-6)


def test_drawn_box_is_scaled_to_image_pixels_in_any_drag_direction():
    wire = {"kind": "box", "box": [200, 150, 40, 30], "size": [400, 300], "from": "browser"}
    region = decode_region(wire, (800, 600))
    assert region.box == (80, 60, 400, 300)
    assert region.mask.shape == (600, 800) and region.mask.sum() == pytest.approx(320 * 240)
    assert region.search_arguments() == {"box": (80, 60, 400, 300)}


def test_drawn_box_is_clipped_to_the_image_or_dropped_outside_it():
    inside = decode_region({"kind": "box", "box": [-50, -10, 100, 80], "size": [200, 100]}, (400, 200))
    assert inside.box == (0, 0, 200, 160)
    assert decode_region({"kind": "box", "box": [210, 0, 260, 50], "size": [200, 100]}, (400, 200)) is None


def test_drawn_mask_becomes_image_pixels_and_the_same_grid_cells():
    # a 448×298 canvas over a 256×170 image; the painted rectangle covers the middle half
    display, image = (448, 298), (256, 170)
    wire = {"kind": "mask", "png": drawn_png(display, (112, 75, 335, 223)), "size": list(display), "from": "browser"}
    region = decode_region(wire, image)
    assert region.box is None and region.mask.shape == (170, 256) and region.mask.dtype == np.float32
    assert region.mask[85, 128] == 1.0 and region.mask[5, 5] == 0.0
    expected = box_to_grid((64, 42.7, 192, 127.5), image, 7)
    np.testing.assert_allclose(mask_to_grid(region.mask, 7), expected, atol=0.02)
    assert set(region.search_arguments()) == {"mask"}


def test_nothing_drawn_is_no_region():
    assert decode_region({}, (10, 10)) is None
    empty = {"kind": "mask", "png": png_data_url(Image.new("RGBA", (20, 10))), "size": [20, 10]}
    assert decode_region(empty, (40, 20)) is None


@pytest.mark.parametrize("wire, message", [
    ({"kind": "mask", "png": drawn_png((20, 10), (0, 0, 5, 5)), "size": [30, 10]}, "drawn at"),
    ({"kind": "mask", "png": "data:image/png;base64,AAAA", "size": [4, 4]}, "readable PNG"),
    ({"kind": "box", "box": [1, 2], "size": [4, 4]}, "four numbers"),
    ({"kind": "box", "box": [0, 0, 2, 2]}, "display size"),
    ({"kind": "lasso", "size": [4, 4]}, "Unknown region kind"),
])
def test_malformed_regions_are_reported(wire, message):
    with pytest.raises(MaskError, match=message):
        decode_region(wire, (40, 20))


def test_regions_set_from_python_survive_the_trip_through_the_browser():
    image, display = (300, 200), display_size((300, 200))
    box = DrawnRegion.from_box((30, 20, 150, 110), image)
    wire = encode_region(box, image, display)
    assert wire["from"] == "python" and decode_region(wire, image).box == pytest.approx(box.box)

    rows, columns = np.mgrid[:200, :300]
    disc = DrawnRegion.from_mask((((columns - 150) ** 2 + (rows - 100) ** 2) < 60**2).astype(np.float32), image)
    back = decode_region(encode_region(disc, image, display), image)
    np.testing.assert_allclose(mask_to_grid(back.mask, 7), mask_to_grid(disc.mask, 7), atol=0.02)


@pytest.mark.parametrize("mask, message", [
    (np.ones((10, 20)), "query image is 30×10"),
    (np.full((10, 30), 2.0), r"\[0, 1\]"),
    (np.zeros((10, 30)), "empty"),
])
def test_masks_set_from_python_are_checked(mask, message):
    with pytest.raises(MaskError, match=message):
        DrawnRegion.from_mask(mask, (30, 10))


# --- the widget over a real cache --------------------------------------------------------------

def browser_box(w: SearchWidget, box: tuple[float, float, float, float]) -> dict:
    return {"kind": "box", "box": list(box), "size": [w._view["width"], w._view["height"]], "from": "browser"}


def test_widget_starts_on_the_first_image(indexed):
    w = SearchWidget(indexed)
    assert w.query == indexed.data / "animals/astronaut.png"
    assert (w._view["width"], w._view["height"]) == display_size((512, 512)) and w._view["size"] == [512, 512]
    assert decoded_jpeg(w._view["src"]).size == (PREVIEW_SIDE, PREVIEW_SIDE)
    assert w._view["name"] == "animals/astronaut.png" and "6 images" in w._status
    assert w.mask is None and w.box is None and w.results == [] and w.search_result is None


def test_drawing_in_the_browser_searches_and_fills_the_payload(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=3)
    width, height = w._view["width"], w._view["height"]
    w._region = {"kind": "mask", "png": drawn_png((width, height), (100, 40, 220, 150)), "size": [width, height],
                 "from": "browser"}
    assert w.mask.shape == (300, 451) and w.box is None
    expected = indexed.search(w.query, mask=w.mask, top_k=3)
    assert [m.path for m in w.results] == [m.path for m in expected.matches]
    assert w.search_result.scores.shape == (6,) and w._error == "" and "mask region" in w._status
    payload = w._matches
    assert [p["rank"] for p in payload] == [1, 2, 3] and payload[0]["path"] == "animals/chelsea.png"
    assert payload[0]["score"] == pytest.approx(1.0, abs=1e-3) and payload[0]["caption"].startswith("#1 1.000")
    assert max(decoded_jpeg(payload[1]["thumb"]).size) == 160


def test_box_set_from_code_searches_and_is_sent_to_the_browser(indexed):
    w = SearchWidget(indexed, query=indexed.data / "things/coffee.png", top_k=4)
    w.box = (100, 50, 300, 250)
    assert w._region["kind"] == "box" and w._region["from"] == "python"
    sx, sy = w._view["width"] / 600, w._view["height"] / 400
    assert w._region["box"] == pytest.approx([100 * sx, 50 * sy, 300 * sx, 250 * sy])
    expected = indexed.search(w.query, box=(100, 50, 300, 250), top_k=4)
    assert [(m.path, m.box) for m in w.results] == [(m.path, m.box) for m in expected.matches]
    assert w.mask.shape == (400, 600) and w.mask.sum() == pytest.approx(200 * 200)


def test_options_rerun_the_search(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=2)
    w._region = browser_box(w, (50, 20, 300, 200))
    assert len(w.results) == 2 and w.results[0].path == "animals/chelsea.png"
    w.top_k = 5
    assert len(w.results) == 5 and len(w._matches) == 5
    w.exclude_query = True
    assert "animals/chelsea.png" not in [m.path for m in w.results]


def test_a_new_query_or_an_empty_region_clears_the_results(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png")
    w.box = (10, 10, 200, 200)
    assert w.results
    w.query = indexed.data / "things/rocket.jpg"
    assert w._region == {} and w._matches == [] and w.mask is None and w._view["name"] == "things/rocket.jpg"
    w.box = (10, 10, 200, 200)
    w.mask = None
    assert w.results == [] and w._region == {}
    w._region = browser_box(w, (0, 0, 100, 100))
    w._region = {}
    assert w.results == [] and w.mask is None


def test_a_mask_set_from_code_is_drawn_in_the_browser(indexed):
    w = SearchWidget(indexed, query="textures/brick.png", top_k=2)
    mask = np.zeros((512, 512), np.float32)
    mask[100:300, 50:250] = 1.0
    w.mask = mask
    assert w._region["kind"] == "mask" and w._region["from"] == "python"
    assert np.array_equal(w.mask, mask) and w.results[0].path == "textures/brick.png"


def test_clicking_a_match_makes_it_the_query(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=3, exclude_query=True)
    w.box = (100, 30, 300, 200)
    second = w.results[1].path
    w._handle_message(w, {"type": "use-as-query", "rank": 2}, [])
    assert w.query == indexed.data / second and w.results == []


def test_problems_show_in_the_widget_not_as_tracebacks(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png")
    w.box = (10, 10, 200, 200)
    w._region = {"kind": "mask", "png": "data:image/png;base64,AAAA", "size": [10, 10], "from": "browser"}
    assert "readable PNG" in w._error and w._matches == [] and w.results == []
    with pytest.raises(ImageError, match="not found"):
        w.query = "missing.png"
    with pytest.raises(MaskError):
        w.box = (900, 900, 950, 950)


def test_widget_factory_indexes_and_lazy_entry_point(indexed, tmp_path):
    w = vfs.widget(indexed, query="things/coffee.png", top_k=2)
    assert isinstance(w, SearchWidget) and w.top_k == 2 and w.query.name == "coffee.png"
    with pytest.raises(TypeError, match="layer"):
        widget(indexed, layer="blocks.3")
    fresh = tmp_path / "one"
    fresh.mkdir()
    shutil.copy(package_photo("coffee.png"), fresh / "coffee.png")
    w = widget(fresh, model=indexed.model, cache_dir=tmp_path / "cache")
    assert len(w.feature_search.cache) == 1 and w.query == fresh / "coffee.png"


def test_payload_and_gallery_show_each_match(indexed):
    result = indexed.search(indexed.data / "animals/chelsea.png", box=(100, 30, 300, 200), top_k=3)
    payload = match_payload(result.matches, indexed.data, side=96)
    assert [p["path"] for p in payload] == [m.path for m in result.matches]
    assert all(max(decoded_jpeg(p["thumb"]).size) == 96 for p in payload)
    shown = gallery(result.matches, indexed.data, side=80, title="a <b>", query=(indexed.data / "animals/chelsea.png",
                                                                                 (100, 30, 300, 200)))
    html = shown._repr_html_()
    assert html.count("<img ") == 4 and "a &lt;b&gt;" in html and "#1 1.000 · animals" in html
    assert repr(shown).startswith("Gallery('a <b>': query, #1 1.000")


def test_scales_search_other_sizes_and_captions_name_them(indexed):
    indexed.scale_level(2.0).index()
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=6, scales=(1.0, 2.0))
    w.box = (100, 50, 300, 250)
    expected = indexed.search(w.query, box=(100, 50, 300, 250), top_k=6, scales=(1.0, 2.0))
    assert [(m.path, m.scale) for m in w.results] == [(m.path, m.scale) for m in expected.matches]
    for payload, match in zip(w._matches, w.results):
        assert payload["caption"].endswith("2× size") == (match.scale == 2.0)
    w.scales = (1.0,)
    assert all(match.scale == 1.0 for match in w.results)


def test_region_alone_searches_the_regions_own_features(indexed):
    w = SearchWidget(indexed, query="animals/chelsea.png", top_k=6, region_alone=True)
    w.box = (100, 50, 300, 250)
    expected = indexed.search(w.query, box=(100, 50, 300, 250), top_k=6, region_alone=True)
    assert [(m.path, round(m.score, 5)) for m in w.results] == [(m.path, round(m.score, 5)) for m in expected.matches]
    w.region_alone = False
    in_photo = indexed.search(w.query, box=(100, 50, 300, 250), top_k=6)
    assert [(m.path, round(m.score, 5)) for m in w.results] == [(m.path, round(m.score, 5)) for m in in_photo.matches]
    assert [round(m.score, 5) for m in in_photo.matches] != [round(m.score, 5) for m in expected.matches]
