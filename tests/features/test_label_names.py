"""Readable label names: a dataset's names file, imagenette's classes.csv, WordNet ids from timm's table."""

from __future__ import annotations

import pytest

from vfs.features.label_names import LabelNames, read_label_names, wordnet_names


def test_a_labels_file_names_folders_and_the_rest_keep_their_folder_names(tmp_path):
    (tmp_path / "labels.csv").write_text("folder,name\nts,t-shirt\nlong,long sleeve\nempty,\n")
    names = read_label_names(tmp_path)
    assert names.names_of(["ts", "long", "empty", "pants", None]) == ["t-shirt", "long sleeve", "empty", "pants", None]


def test_imagenettes_classes_csv_is_read_as_shipped(tmp_path):
    (tmp_path / "classes.csv").write_text("synset,imagenet_index,name\nn01440764,0,tench\nn03000684,491,chain saw\n")
    assert read_label_names(tmp_path).name("n03000684") == "chain saw"


def test_a_file_without_the_columns_or_unreadable_leaves_folder_names(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "classes.csv").write_text("id,label\nshirt,Shirt\n")
    assert read_label_names(tmp_path).name("shirt") == "shirt"


@pytest.mark.torch  # WordNet names come from timm's table, and timm comes with torch
def test_wordnet_ids_are_named_from_timm_unless_a_file_says_otherwise(tmp_path):
    assert wordnet_names()["n01440764"] == "tench"
    assert LabelNames().name("n01440764") == "tench"
    assert LabelNames({"n01440764": "a fish"}).name("n01440764") == "a fish"
    assert LabelNames().name("n99999999") == "n99999999"


def test_the_shipped_demo_is_ten_labelled_folders_of_cc0_photos():
    from pathlib import Path

    from vfs.features.images import scan_images

    demo = Path(__file__).resolve().parents[2] / "data" / "clothing"
    entries, skipped = scan_images(demo)
    labels = {entry.label for entry in entries}
    assert len(entries) == 400 and not skipped and len(labels) == 10 and "t-shirt" in labels
    assert "CC0" in (demo / "LICENSE").read_text() + (demo / "README.md").read_text()
