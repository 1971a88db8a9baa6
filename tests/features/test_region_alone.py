"""The region alone: its features do not depend on the photo around it, only on the region (and backgrounds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.support.data import package_photo
from vfs.cli import main as cli_main
from vfs.errors import MaskError
from vfs.feature_search import FeatureSearch
from vfs.features.region_alone import BACKGROUNDS, region_alone_grid, region_box_of_mask

LAYER, GRID = "blocks.6", 4
BOX = (60, 40, 150, 130)  # in the pixels of a 224×224 photo: no resampling between the photo and the model's input


def photo(name: str) -> Image.Image:
    with Image.open(package_photo(name)) as image:
        return image.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)


def model_grid(model, image: Image.Image) -> np.ndarray:
    layer = model.layer(LAYER)
    return model.grid_features(model.preprocessing(image)[None], layer, GRID)[0].numpy()


def pasted(image: Image.Image, background: Image.Image) -> Image.Image:
    composite = background.copy()
    composite.paste(image.crop(BOX), BOX[:2])
    return composite


def test_the_grid_is_the_mean_of_the_regions_pasted_onto_each_background(lite0):
    query, backgrounds = photo("chelsea.png"), [photo("brick.png"), photo("rocket.jpg")]
    alone = region_alone_grid(lite0, lite0.layer(LAYER), GRID, query, BOX, backgrounds)
    expected = np.mean([model_grid(lite0, pasted(query, b)) for b in backgrounds], axis=0)
    np.testing.assert_allclose(alone, expected, rtol=2e-3, atol=2e-3)  # float16 rounding, as the cache
    # no background: zero input (the model's mean colour) around the region
    alone_input = lite0.preprocessing(query)
    x0, y0, x1, y1 = BOX
    alone_input[:, :, :x0] = alone_input[:, :, x1:] = alone_input[:, :y0] = alone_input[:, y1:] = 0
    expected = lite0.grid_features(alone_input[None], lite0.layer(LAYER), GRID)[0].numpy()
    np.testing.assert_allclose(region_alone_grid(lite0, lite0.layer(LAYER), GRID, query, BOX, []), expected,
                               rtol=2e-3, atol=2e-3)


def test_the_photo_outside_the_region_changes_nothing_and_the_region_changes_everything(lite0):
    query, backgrounds = photo("chelsea.png"), [photo("brick.png"), photo("rocket.jpg")]
    layer = lite0.layer(LAYER)
    alone = region_alone_grid(lite0, layer, GRID, query, BOX, backgrounds)
    elsewhere = pasted(query, photo("coffee.png"))  # the same region in another photo
    np.testing.assert_array_equal(region_alone_grid(lite0, layer, GRID, elsewhere, BOX, backgrounds), alone)
    assert not np.allclose(model_grid(lite0, elsewhere), model_grid(lite0, query), atol=0.05)  # it does in a photo
    other_region = region_alone_grid(lite0, layer, GRID, photo("astronaut.png"), BOX, backgrounds)
    assert np.abs(other_region - alone).max() > 0.5


def test_a_masks_region_is_its_bounding_box_in_the_images_pixels():
    mask = np.zeros((50, 100))
    mask[10:20, 30:41] = 1
    assert region_box_of_mask(mask, (200, 100)) == (60, 20, 82, 40)
    with pytest.raises(MaskError, match="selects nothing"):
        region_box_of_mask(np.zeros((4, 4)), (8, 8))


@pytest.fixture
def photos_224(tmp_path, photo_dir):
    """photo_dir at 224×224, so a box means the same pixels to the model as to the test."""
    for file in photo_dir.rglob("*.*"):
        with Image.open(file) as image:
            image.convert("RGB").resize((224, 224)).save(file.with_suffix(".png"))
        if file.suffix != ".png":
            file.unlink()
    return photo_dir


def test_search_and_the_command_line_match_the_region_alone(tmp_path, capsys, lite0, photos_224):
    fs = FeatureSearch(photos_224, lite0, layer=LAYER, grid=GRID, cache_dir=tmp_path / "c")
    fs.index()
    query = photos_224 / "animals/chelsea.png"
    result = fs.search(query, box=BOX, top_k=9, region_alone=True)
    rows = [row for row, _ in fs.background_photos()]
    assert len(set(rows)) == len(rows) == min(BACKGROUNDS + 1, len(fs.cache))
    # the photo around the region changes nothing: the query's region in two other photos scores the same
    # (neither is a dataset photo, so both get the same backgrounds)
    with Image.open(query) as image:
        for name in ("coffee.png", "grass.png"):
            pasted(image.convert("RGB"), photo(name)).save(tmp_path / name)
    on_coffee, on_grass = (fs.search(tmp_path / name, box=BOX, top_k=9, region_alone=True)
                           for name in ("coffee.png", "grass.png"))
    np.testing.assert_array_equal(on_coffee.scores, on_grass.scores)
    assert [m.path for m in on_coffee.matches][0] == "animals/chelsea.png"
    plain = fs.search(query, box=BOX, top_k=9)
    assert not np.allclose(plain.scores, result.scores, atol=1e-3)  # the photo's surroundings do matter otherwise
    code = cli_main(["search", str(photos_224), "--layer", LAYER, "--grid", str(GRID), "--cache-dir",
                     str(tmp_path / "c"), "--query", str(query), "--box", ",".join(map(str, BOX)), "--top-k", "9",
                     "--region-alone", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["region_alone"] is True
    assert [(r["path"], round(r["score"], 4)) for r in out["results"]] == [
        (m.path, round(m.score, 4)) for m in result.matches]


def test_an_unreadable_dataset_photo_is_passed_over_as_a_background(tmp_path, lite0, photos_224):
    fs = FeatureSearch(photos_224, lite0, layer=LAYER, grid=GRID, cache_dir=tmp_path / "c")
    fs.index()
    broken = photos_224 / fs.cache.paths[0]
    broken.write_bytes(b"not an image")
    rows = [row for row, _ in fs.background_photos()]
    assert 0 not in rows and len(rows) == len(set(rows)) == min(BACKGROUNDS + 1, len(fs.cache) - 1)
