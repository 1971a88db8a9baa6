"""Pictures: matched windows, heatmaps over window positions, region overlays, previews."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from vfs.pictures import (
    DIM,
    MATCH_COLOUR,
    colour_map,
    fit_within,
    heatmap_picture,
    jpeg_bytes,
    load_preview,
    match_jpegs,
    match_picture,
    region_picture,
)

GREY = (200, 200, 200)


def test_match_picture_dims_outside_and_outlines_the_window():
    image = Image.new("RGB", (100, 50), GREY)
    # the box is in the full image's pixels (400×200); the picture is a quarter of that
    picture = np.asarray(match_picture(image, (80, 40, 240, 160), (400, 200), outline=2))
    assert tuple(picture[25, 40]) == GREY  # inside the window, untouched
    assert tuple(picture[5, 90]) == tuple(int(v * DIM) for v in GREY)  # outside, dimmed
    assert tuple(picture[10, 40]) == MATCH_COLOUR and tuple(picture[25, 20]) == MATCH_COLOUR  # the outline
    assert tuple(picture[25, 22]) == GREY  # the outline is 2 pixels wide


def test_colour_map_runs_from_dark_to_bright():
    colours = colour_map(np.linspace(0, 1, 11)).astype(int)
    brightness = colours.sum(axis=1)
    assert (np.diff(brightness) > 0).all()
    assert tuple(colour_map(np.array(-3.0))) == tuple(colour_map(np.array(0.0)))  # clipped


def test_heatmap_colours_each_window_position_at_its_centre_cell():
    image = Image.new("RGB", (70, 70), (0, 0, 0))
    scores = np.zeros((5, 5), np.float32)  # a 3×3 window on a 7×7 grid has 5×5 positions
    scores[1, 3] = 1.0  # best window: rows 1-3, columns 3-5, centred on cell (2, 4)
    picture = np.asarray(heatmap_picture(image, scores, (3, 3), 7, opacity=1.0)).astype(int)
    brightest = np.unravel_index(picture.sum(axis=2).argmax(), picture.shape[:2])
    assert (brightest[0] // 10, brightest[1] // 10) == (2, 4)
    assert picture[5, 5].sum() == 0  # border cells: no window is centred there
    assert picture[15, 15].sum() > 0  # the lowest score still gets the map's darkest colour, not nothing


def test_heatmap_outlines_the_best_box():
    image = Image.new("RGB", (70, 70), (0, 0, 0))
    picture = np.asarray(heatmap_picture(image, np.ones((1, 1)), (7, 7), 7, best_box=(0, 0, 140, 140),
                                         full_size=(140, 140)))
    assert tuple(picture[0, 35]) == (255, 255, 255)


def test_region_picture_tints_by_weight():
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    weights = np.array([[1.0, 0.0], [0.5, 0.0]])
    picture = np.asarray(region_picture(image, weights, opacity=1.0)).astype(int)
    assert tuple(picture[5, 5]) == MATCH_COLOUR
    assert picture[30, 5].sum() < picture[5, 5].sum() and picture[30, 5].sum() > 0
    assert picture[5, 30].sum() == 0
    assert tuple(picture[5, 20]) == (255, 255, 255)  # the cell border


def test_preview_of_a_rotated_jpeg_reports_the_upright_full_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (800, 600), (10, 20, 30)).save(tmp_path / "rotated.jpg", exif=exif)
    preview, full_size = load_preview(tmp_path / "rotated.jpg", 200)
    assert full_size == (600, 800)
    assert preview.size == (150, 200)


def test_preview_decodes_large_jpegs_at_reduced_size(tmp_path):
    Image.effect_noise((4000, 3000), 40).convert("RGB").save(tmp_path / "big.jpg")
    preview, full_size = load_preview(tmp_path / "big.jpg", 256)
    assert full_size == (4000, 3000) and max(preview.size) == 256


def test_match_jpegs_keeps_the_order_of_its_input(tmp_path):
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (64, 64), colour).save(tmp_path / f"{name}.png")
    red, blue = match_jpegs([(tmp_path / "red.png", (0, 0, 64, 64)), (tmp_path / "blue.png", (0, 0, 64, 64))], 32)
    assert np.asarray(Image.open(io.BytesIO(red)))[16, 16][0] > 200
    assert np.asarray(Image.open(io.BytesIO(blue)))[16, 16][2] > 200


def test_fit_within_and_jpeg_bytes():
    picture = fit_within(Image.new("RGB", (1000, 500)), 300)
    assert picture.size == (300, 150)
    assert Image.open(io.BytesIO(jpeg_bytes(picture))).format == "JPEG"
