"""Readable names for a dataset's labels (its sub-folder names).

A dataset may name its folders in a CSV file at its root: ``labels.csv`` with the columns
``folder,name``, or ``classes.csv`` as imagenette ships it (``synset,imagenet_index,name``).
Folders the file does not name keep their folder name, except WordNet ids (``n01440764``),
which are named from the synset table timm ships ("tench"). The label itself stays the folder
name everywhere it identifies images (caches, links, ``vfs search --json``'s ``"label"``).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Names files a dataset root may hold, first found wins, each with the column naming the folder.
NAMES_FILES = (("labels.csv", "folder"), ("classes.csv", "synset"))
NAME_COLUMN = "name"
_WORDNET_ID = re.compile(r"n\d{8}")
# A names file is a short table; a large file at a dataset root is something else.
_MAX_NAMES_FILE_BYTES = 4 * 1024 * 1024


@functools.cache
def wordnet_names() -> dict[str, str]:
    """WordNet id → its first lemma, from timm's synset table (read as a file: importing timm loads torch).
    Empty when timm is not installed."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return {}
    table = Path(spec.origin).parent / "data" / "_info" / "imagenet_synset_to_lemma.txt"
    if not table.is_file():
        return {}
    names = {}
    for line in table.read_text(encoding="utf-8").splitlines():
        synset, _, lemmas = line.partition("\t")
        names[synset] = lemmas.split(",", 1)[0].strip()
    return names


def _read_names_file(root: Path) -> dict[str, str]:
    for file_name, folder_column in NAMES_FILES:
        path = root / file_name
        try:
            if not path.is_file() or path.stat().st_size > _MAX_NAMES_FILE_BYTES:
                continue
            with path.open(newline="", encoding="utf-8-sig") as file:
                rows = csv.DictReader(file)
                if not {folder_column, NAME_COLUMN} <= set(rows.fieldnames or ()):
                    continue
                return {row[folder_column].strip(): row[NAME_COLUMN].strip() for row in rows
                        if row[folder_column] and row[NAME_COLUMN] and row[NAME_COLUMN].strip()}
        except (OSError, UnicodeDecodeError, csv.Error):
            continue  # an unreadable names file leaves the folder names as they are
    return {}


@dataclass(frozen=True)
class LabelNames:
    """Folder name → readable name; a folder without one is shown as it is named."""

    names: Mapping[str, str] = field(default_factory=dict)

    def name(self, label: str | None) -> str | None:
        if label is None:
            return None
        named = self.names.get(label)
        if named is None and _WORDNET_ID.fullmatch(label):
            named = wordnet_names().get(label)
        return named or label

    def names_of(self, labels: Sequence[str | None]) -> list[str | None]:
        named = {label: self.name(label) for label in set(labels)}
        return [named[label] for label in labels]


def read_label_names(root: str | Path) -> LabelNames:
    """The names a dataset folder gives its labels (none for a folder without a names file, or a URI)."""
    return LabelNames(_read_names_file(Path(root)))
