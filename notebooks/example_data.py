"""Datasets for the example notebooks, built from what the machine has.

With ``../shared/datasets/imagenette-val`` beside the repository, a deterministic subset of it
(the first ``per_class`` files of each class, by name) is copied into
``data/examples/imagenette-val-<per_class>/<class name>/``. Without it, the first
:data:`DEMO_PER_LABEL` photos of each label of the demo dataset the repository ships
(``data/clothing``, CC0) go to ``data/examples/clothing-<n>/``. Either way the notebooks run the
same code, and :attr:`ExampleData.description` says which data they used.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from vfs.errors import DatasetError
from vfs.features.images import IMAGE_EXTENSIONS, load_image

IMAGENETTE = Path("shared/datasets/imagenette-val")
EXAMPLES_DIR = Path("data/examples")
DEMO = Path("data/clothing")
#: Photos of each demo label the notebooks use: enough for label statistics, quick to index.
DEMO_PER_LABEL = 12

#: The suggested query of each dataset: (label, file index in its folder, box as fractions of the image).
_IMAGENETTE_QUERY = ("English springer", 2, (0.18, 0.02, 0.70, 0.45))  # the dog's head
_DEMO_QUERY = ("shoes", 0, (0.18, 0.20, 0.47, 0.45))  # the laces of the left shoe


@dataclass(frozen=True)
class ExampleData:
    """A labelled dataset folder (one sub-folder per label) and a suggested query region."""

    path: Path
    description: str
    query: Path  # an image inside ``path``
    query_box: tuple[float, float, float, float]  # in the query image's pixels
    from_shared: bool


def repo_root(cwd: str | Path | None = None) -> Path:
    """The repository root: the parent of ``notebooks/`` when run from there, else ``cwd``.

    Jupyter starts a notebook's kernel in the notebook's folder; elsewhere (Colab, a script)
    the working directory stands in for the repository.
    """
    cwd = Path.cwd() if cwd is None else Path(cwd)
    return cwd.parent if cwd.name == "notebooks" else cwd


def _fraction_box(path: Path, fractions: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    with Image.open(path) as image:
        width, height = image.size
    x0, y0, x1, y1 = fractions
    return (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(folder)`` into a temporary folder renamed to ``target``, unless it exists.

    A crash or an interrupted notebook never leaves a half-built dataset behind.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    partial.chmod(0o755)  # mkdtemp makes it private; the dataset is not
    try:
        build(partial)
        os.replace(partial, target)
    except OSError:
        if not target.is_dir():  # unless another process finished the same build first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def class_names(imagenette: Path) -> dict[str, str]:
    """synset -> readable class name, from the dataset's ``classes.csv``."""
    with open(imagenette / "classes.csv", newline="") as handle:
        return {row["synset"]: row["name"] for row in csv.DictReader(handle)}


def imagenette_subset(imagenette: Path, target: Path, per_class: int) -> Path:
    """The first ``per_class`` images of every class of ``imagenette`` in ``target/<class name>/``."""
    return labelled_subset(imagenette, target, per_class, class_names(imagenette))


def labelled_subset(source: Path, target: Path, per_class: int, names: dict[str, str]) -> Path:
    """The first ``per_class`` images of each folder ``source/<folder>`` in ``target/<names[folder]>/``."""

    def build(folder: Path) -> None:
        for label, name in sorted(names.items()):
            (folder / name).mkdir()
            for image in _images(source / label)[:per_class]:
                shutil.copy2(image, folder / name / image.name)

    return _build_once(target, build)


def example_dataset(root: str | Path | None = None, per_class: int = 40) -> ExampleData:
    """The notebooks' dataset: an imagenette-val subset when ``<root>/../shared`` has it, else the shipped demo."""
    root = repo_root() if root is None else Path(root)
    imagenette = root.parent / IMAGENETTE
    if (imagenette / "classes.csv").is_file():
        path = imagenette_subset(imagenette, root / EXAMPLES_DIR / f"imagenette-val-{per_class}", per_class)
        description = (f"imagenette-val from {imagenette.resolve()}: the first {per_class} photos of each of its "
                       f"10 classes ({sum(1 for _ in path.glob('*/*'))} images)")
        label, number, fractions = _IMAGENETTE_QUERY
        from_shared = True
    else:
        demo = root / DEMO
        if not demo.is_dir():
            raise DatasetError(f"Neither {imagenette} nor the demo photos ({demo}) are here: run the notebooks "
                               "from the repository's notebooks/ folder.")
        labels = _labels(demo)
        path = labelled_subset(demo, root / EXAMPLES_DIR / f"clothing-{DEMO_PER_LABEL}", DEMO_PER_LABEL,
                               {label: label for label in labels})
        description = (f"the clothing demo ({imagenette} not found): the first {DEMO_PER_LABEL} photos of each of "
                       f"its {len(labels)} labels in {DEMO} ({sum(1 for _ in path.glob('*/*'))} images)")
        label, number, fractions = _DEMO_QUERY
        from_shared = False
    query = _images(path / label)[number]
    return ExampleData(path, description, query, _fraction_box(query, fractions), from_shared)


def _labels(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir())


def sketch(image: Image.Image) -> Image.Image:
    """A pencil-sketch rendering in grey: dark edges on white, no colour or shading."""
    # padded by its own border pixels: the filter leaves the outermost pixels unfiltered (a dark frame)
    grey = Image.fromarray(np.pad(np.asarray(image.convert("L")), 1, mode="edge"))
    edges = grey.filter(ImageFilter.FIND_EDGES).crop((1, 1, image.width + 1, image.height + 1))
    return ImageOps.invert(ImageOps.autocontrast(edges, cutoff=1))


def sketch_dataset(data: ExampleData, root: str | Path | None = None) -> ExampleData:
    """The same images and labels as ``data``, rendered as sketches: an out-of-domain copy."""
    root = repo_root() if root is None else Path(root)

    def build(folder: Path) -> None:
        for label in _labels(data.path):
            (folder / label).mkdir()
            for source in _images(data.path / label):
                sketch(load_image(source)).save(folder / label / f"{source.stem}.png")

    path = _build_once(root / EXAMPLES_DIR / f"{data.path.name}-sketches", build)
    query = path / data.query.relative_to(data.path).with_suffix(".png")
    return replace(data, path=path, query=query, description=f"sketches of {data.description}")
