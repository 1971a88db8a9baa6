"""The notebooks' datasets: an imagenette-val subset when ../shared has one, the shipped clothing demo otherwise."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from notebooks.example_data import (
    DEMO,
    DEMO_PER_LABEL,
    example_dataset,
    imagenette_subset,
    repo_root,
    sketch,
    sketch_dataset,
)
from vfs.errors import DatasetError


def fake_imagenette(shared: Path, per_class: int) -> Path:
    """A stand-in for ../shared/datasets/imagenette-val with two classes of small JPEGs."""
    root = shared / "datasets" / "imagenette-val"
    classes = {"n02102040": "English springer", "n03445777": "golf ball"}
    (root).mkdir(parents=True)
    (root / "classes.csv").write_text("synset,imagenet_index,name\n" + "".join(
        f"{synset},0,{name}\n" for synset, name in classes.items()))
    rng = np.random.default_rng(0)
    for synset in classes:
        (root / synset).mkdir()
        for number in range(per_class):
            pixels = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / synset / f"img_{number:03d}.JPEG")
    return root


def test_repo_root_is_the_parent_of_notebooks(tmp_path):
    assert repo_root(tmp_path / "repo" / "notebooks") == tmp_path / "repo"
    assert repo_root(tmp_path / "content") == tmp_path / "content"


def test_imagenette_subset_takes_the_first_files_of_each_class_under_readable_names(tmp_path):
    source = fake_imagenette(tmp_path / "shared", per_class=5)
    subset = imagenette_subset(source, tmp_path / "subset", per_class=3)
    assert sorted(p.relative_to(subset).as_posix() for p in subset.glob("*/*")) == [
        f"{name}/img_{n:03d}.JPEG" for name in ("English springer", "golf ball") for n in range(3)]
    assert not list(tmp_path.glob(".subset-*"))  # the temporary build folder is gone


def test_example_dataset_uses_shared_imagenette_beside_the_repository(tmp_path):
    fake_imagenette(tmp_path / "shared", per_class=4)
    data = example_dataset(tmp_path / "repo", per_class=3)
    assert data.from_shared and data.path == tmp_path / "repo" / "data" / "examples" / "imagenette-val-3"
    assert data.query == data.path / "English springer" / "img_002.JPEG"
    assert data.query_box == (14, 1, 56, 27)  # the fractions of the suggested box on an 80×60 image
    assert "first 3 photos" in data.description and "(6 images)" in data.description


REPO = Path(__file__).resolve().parents[2]


def test_without_shared_the_shipped_demo_is_used(tmp_path):
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "repo" / DEMO).symlink_to(REPO / DEMO)  # a clone without ../shared beside it
    data = example_dataset(tmp_path / "repo")
    assert not data.from_shared and data.description.startswith("the clothing demo")
    labels = sorted(p.name for p in data.path.iterdir())
    assert labels == sorted(p.name for p in (REPO / DEMO).iterdir() if p.is_dir()) and len(labels) == 10
    assert all(len(list((data.path / label).iterdir())) == DEMO_PER_LABEL for label in labels)
    first_shoes = sorted((REPO / DEMO / "shoes").iterdir())[0]
    assert data.query == data.path / "shoes" / first_shoes.name
    with Image.open(data.query) as query:
        width, height = query.size
    x0, y0, x1, y1 = data.query_box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert example_dataset(tmp_path / "repo").path == data.path  # built once, then reused


def test_without_shared_or_the_demo_the_message_says_where_to_run(tmp_path):
    with pytest.raises(DatasetError, match="notebooks/ folder"):
        example_dataset(tmp_path / "elsewhere")


def test_sketches_keep_edges_and_drop_colour(tmp_path):
    picture = Image.new("RGB", (40, 40), (200, 30, 30))
    picture.paste((30, 30, 200), (20, 0, 40, 40))
    drawn = np.asarray(sketch(picture))
    assert drawn.ndim == 2 and drawn[20, 5] == 255 and drawn[20, 19] < 128  # white paper, a dark edge
    assert drawn[0, :15].min() == drawn[:, 0].min() == drawn[:, -1].min() == 255  # and no frame around it

    source = fake_imagenette(tmp_path / "shared", per_class=3)
    data = example_dataset(tmp_path / "repo", per_class=3)
    sketches = sketch_dataset(data, tmp_path / "repo")
    assert source.is_dir() and sketches.path.name == "imagenette-val-3-sketches"
    assert sorted(p.relative_to(sketches.path).with_suffix("").as_posix() for p in sketches.path.glob("*/*")) == \
        sorted(p.relative_to(data.path).with_suffix("").as_posix() for p in data.path.glob("*/*"))
    assert sketches.query.is_file() and sketches.query_box == data.query_box
    assert sketches.description.startswith("sketches of imagenette-val")
