import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vfs.analysis.match_modes import search_modes
from vfs.cli import main
from vfs.feature_search import FeatureSearch

pytestmark = pytest.mark.torch  # the commands index, search or list with timm's models


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_json(capsys):
    code, out, _ = run(capsys, "layers", "tf_efficientnet_lite0", "--json")
    layers = json.loads(out)
    assert code == 0 and layers[-1] == {"name": "blocks.6", "channels": 320, "height": 7, "width": 7}


def test_models_lists_bundled_first(capsys):
    code, out, _ = run(capsys, "models")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("tf_efficientnet_lite0  [bundled")


def test_index_then_search_json(tmp_path, capsys, photo_dir):
    cache = tmp_path / "cache"
    code, out, err = run(capsys, "index", photo_dir, "--layer", "blocks.5", "--cache-dir", cache, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["images"] == 9 and summary["indexed"] == 9 and len(summary["cache_files"]) == 1

    query = photo_dir / "animals" / "chelsea.png"
    code, out, _ = run(capsys, "search", photo_dir, "--layer", "blocks.5", "--cache-dir", cache, "--query", query,
                       "--box", "100,40,300,200", "--top-k", "3", "--json")
    result = json.loads(out)
    assert code == 0 and result["model"] == "tf_efficientnet_lite0" and result["layer"] == "blocks.5"
    assert result["grid"] == [7, 7] and result["n_images"] == 9 and len(result["results"]) == 3
    top = result["results"][0]
    assert top["path"] == "animals/chelsea.png" and abs(top["score"] - 1.0) < 1e-4 and top["label"] == "animals"
    x0, y0, x1, y1 = top["box"]
    assert x0 <= 100 and y0 <= 40 and x1 >= 300 and y1 >= 200  # the whole cells under the box
    grid_mask = np.array(result["grid_mask"])
    assert grid_mask.shape == (7, 7) and grid_mask.max() == 1.0 and (grid_mask == 0).sum() > 20

    mask = np.zeros((300, 451), np.uint8)  # chelsea.png is 451×300
    mask[40:200, 100:300] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, out, _ = run(capsys, "search", photo_dir, "--layer", "blocks.5", "--cache-dir", cache, "--query", query,
                       "--mask", tmp_path / "mask.png", "--top-k", "3", "--json", "--exclude-query")
    masked = json.loads(out)
    np.testing.assert_allclose(masked["grid_mask"], result["grid_mask"], atol=1e-5)
    assert "animals/chelsea.png" not in [r["path"] for r in masked["results"]]


def test_search_indexes_what_is_missing_first(tmp_path, capsys, photo_dir):
    code, out, err = run(capsys, "search", photo_dir, "--layer", "blocks.6", "--grid", "3", "--cache-dir",
                         tmp_path / "c", "--query", photo_dir / "china.jpg", "--box", "0,0,100,100", "--top-k", "2")
    assert code == 0 and "indexed 9" in err and "9 images searched" in out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys, photo_dir):
    code, _, err = run(capsys, "layers", "resnet5")
    assert code == 2 and err.startswith("vfs: error: Unknown model 'resnet5'") and "Traceback" not in err
    code, _, err = run(capsys, "index", tmp_path / "missing", "--cache-dir", tmp_path / "c")
    assert code == 2 and "does not exist" in err
    (tmp_path / "bad.jpg").write_text("not an image")
    code, _, err = run(capsys, "search", photo_dir, "--cache-dir", tmp_path / "c", "--query", tmp_path / "bad.jpg",
                       "--box", "0,0,5,5")
    assert code == 2 and "not a recognised image format" in err
    code, _, err = run(capsys, "search", photo_dir, "--cache-dir", tmp_path / "c", "--query", photo_dir / "china.jpg",
                       "--box", "5,5,5,9")
    assert code == 2 and "empty" in err


@pytest.mark.slow  # end to end, in a subprocess or over the whole demo
def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "vfs.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "index" in done.stdout and "search" in done.stdout
    scripts = __import__("sysconfig").get_path("scripts")
    done = subprocess.run([f"{scripts}/vfs", "layers", "tf_efficientnet_lite0"], capture_output=True, text=True)
    assert done.returncode == 0 and "blocks.6 (320×7×7)  (default)" in done.stdout


def test_regions_file_searches_a_region_set(tmp_path, capsys, photo_dir):
    cache = tmp_path / "cache"
    mask = np.zeros((300, 451), np.uint8)  # chelsea.png is 451×300
    mask[40:200, 100:300] = 255
    Image.fromarray(mask).save(tmp_path / "cat-mask.png")
    regions = [{"image": "animals/chelsea.png", "box": [100, 40, 300, 200]},
               {"image": "objects/coffee.png", "box": [0, 0, 200, 200]},
               {"image": "textures/brick.png", "box": [0, 0, 256, 256], "negative": True}]
    (photo_dir / "regions.json").write_text(json.dumps(regions))
    common = ["--layer", "blocks.5", "--cache-dir", cache]
    code, out, err = run(capsys, "search", photo_dir, *common, "--regions", photo_dir / "regions.json", "--json",
                         "--top-k", "9")
    assert code == 0, err
    result = json.loads(out)
    assert result["negative"] == [False, False, True] and result["negative_weight"] == 1.0
    assert all(len(r["boxes"]) == 2 and len(r["region_scores"]) == 3 for r in result["results"])
    for r in result["results"]:  # the documented score, from the per-region scores it reports
        s = r["region_scores"]
        assert abs(r["score"] - ((s[0] + s[1]) / 2 - s[2])) < 1e-5
    (photo_dir / "positives.json").write_text(json.dumps(regions[:2]))
    code, out, _ = run(capsys, "search", photo_dir, *common, "--regions", photo_dir / "positives.json", "--json",
                       "--top-k", "9")
    without_negative = [r["path"] for r in json.loads(out)["results"]]
    with_negative = [r["path"] for r in result["results"]]
    assert with_negative.index("textures/brick.png") > without_negative.index("textures/brick.png")

    import vfs

    api_search = vfs.FeatureSearch(photo_dir, layer="blocks.5", cache_dir=cache)
    api_cache = api_search.cache
    api = api_search.search_regions(
        [vfs.QueryRegion(photo_dir / "animals/chelsea.png", mask=tmp_path / "cat-mask.png"),
         vfs.QueryRegion(photo_dir / "objects/coffee.png", box=(0, 0, 200, 200)),
         vfs.QueryRegion(photo_dir / "textures/brick.png", box=(0, 0, 256, 256), negative=True)], top_k=9)
    assert [m.path for m in api.matches] == [r["path"] for r in result["results"]]  # the mask is the same region

    code, out, err = run(capsys, "search", photo_dir, *common, "--regions", photo_dir / "regions.json", "--json",
                         "--top-k", "9", "--modes", "12")
    assert code == 0, err
    modes = json.loads(out)["modes"]  # the set's top 12, grouped by their windows for both positive regions
    assert modes == [mode.to_dict(api_cache) for mode in search_modes(api_search, api, n=12)]
    assert sum(mode["size"] for mode in modes) == min(12, json.loads(out)["n_images"])

    code, out, err = run(capsys, "search", photo_dir, *common, "--regions", photo_dir / "regions.json", "--json",
                         "--top-k", "9", "--scales", "0.5,1")  # builds the missing level first
    assert code == 0, err
    scaled = api_search.search_regions(_regions_of(photo_dir, regions), top_k=9, scales=(0.5, 1.0))
    found = json.loads(out)
    assert found["scales"] == [0.5, 1.0]
    assert [r["path"] for r in found["results"]] == [m.path for m in scaled.matches]
    assert [r["scales"] for r in found["results"]] == [m.scales for m in scaled.matches]

    (tmp_path / "bad.json").write_text(json.dumps([{"image": "animals/chelsea.png"}]))
    code, _, err = run(capsys, "search", photo_dir, *common, "--regions", tmp_path / "bad.json")
    assert code == 2 and "exactly one of" in err
    code, _, err = run(capsys, "search", photo_dir, *common)
    assert code == 2 and "--regions" in err


def test_modes_group_the_top_matches(tmp_path, capsys, photo_dir):
    code, out, err = run(capsys, "search", photo_dir, "--layer", "blocks.5", "--cache-dir", tmp_path / "c",
                         "--query", photo_dir / "animals/chelsea.png", "--box", "100,40,300,200", "--modes", "9",
                         "--json")
    assert code == 0, err
    modes = json.loads(out)["modes"]
    assert sum(mode["size"] for mode in modes) == 9
    assert all(set(mode) == {"size", "exemplars", "labels"} and sum(mode["labels"].values()) == mode["size"]
               for mode in modes)


def test_scales_index_their_levels_and_every_result_says_its_scale(tmp_path, capsys, photo_dir):
    common = ["--layer", "blocks.6", "--grid", "4", "--cache-dir", tmp_path / "c"]
    code, out, err = run(capsys, "index", photo_dir, *common, "--scales", "0.5,1", "--json")
    summary = json.loads(out)
    assert code == 0, err
    assert [level["scale"] for level in summary["scale_levels"]] == [0.5]
    assert summary["scale_levels"][0]["images"] == summary["images"] == 9
    code, out, err = run(capsys, "search", photo_dir, *common, "--scales", "1,0.5", "--query",
                         photo_dir / "animals/chelsea.png", "--box", "100,40,300,200", "--json")
    result = json.loads(out)
    assert code == 0, err
    assert result["scales"] == [0.5, 1.0] and {r["scale"] for r in result["results"]} <= {0.5, 1.0}
    assert result["results"][0]["path"] == "animals/chelsea.png" and result["results"][0]["scale"] == 1.0
    code, out, _ = run(capsys, "search", photo_dir, *common, "--query", photo_dir / "animals/chelsea.png",
                       "--box", "100,40,300,200", "--json")
    assert all(r["scale"] == 1.0 for r in json.loads(out)["results"])  # scale 1 alone: today's search
    code, out, err = run(capsys, "search", photo_dir, *common, "--scales", "1,0.5", "--query",
                         photo_dir / "animals/chelsea.png", "--box", "100,40,300,200", "--modes", "9", "--json")
    assert code == 0, err
    modes = json.loads(out)["modes"]  # each match's window read from the level it was found at
    fs = FeatureSearch(photo_dir, layer="blocks.6", grid=4, cache_dir=tmp_path / "c")
    scaled = fs.search(photo_dir / "animals/chelsea.png", box=(100, 40, 300, 200), scales=(0.5, 1.0))
    assert modes == [mode.to_dict(fs.cache) for mode in search_modes(fs, scaled, n=9)]
    assert sum(mode["size"] for mode in modes) == 9
    with pytest.raises(SystemExit) as exited:
        run(capsys, "search", photo_dir, *common, "--scales", "x")
    assert exited.value.code == 2 and "Scales are numbers" in capsys.readouterr().err


def test_json_results_name_their_labels(tmp_path, capsys, photo_dir):
    (photo_dir / "labels.csv").write_text("folder,name\nanimals,animals and people\n")
    code, out, err = run(capsys, "search", photo_dir, "--layer", "blocks.6", "--grid", "3", "--cache-dir",
                         tmp_path / "c", "--query", photo_dir / "animals/chelsea.png", "--box", "0,0,200,200",
                         "--top-k", "9", "--json")
    assert code == 0, err
    by_folder = {r["label"]: r["label_name"] for r in json.loads(out)["results"]}
    assert by_folder["animals"] == "animals and people"  # named by the dataset's labels.csv
    assert by_folder["textures"] == "textures"  # a folder the file does not name keeps its own name


def _regions_of(root: Path, items: list[dict]) -> list:
    from vfs.feature_search import QueryRegion

    return [QueryRegion(root / item["image"], box=tuple(item["box"]), negative=item.get("negative", False))
            for item in items]
