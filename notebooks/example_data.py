"""Datasets for the example notebooks, built from what the machine has.

With ``../shared/datasets/imagenette-val`` beside the repository, a deterministic subset of it
(the first ``per_class`` files of each class, by name) is copied into
``data/examples/imagenette-val-<per_class>/<class name>/``. Without it, the photographs that
scikit-image and scikit-learn ship are cut into a few crops and flips each, one label folder per
photograph, in ``data/examples/package-photos/``. Either way the notebooks run the same code,
and :attr:`ExampleData.description` says which data they used.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from vfs.errors import DatasetError
from vfs.features.images import IMAGE_EXTENSIONS, load_image

IMAGENETTE = Path("shared/datasets/imagenette-val")
EXAMPLES_DIR = Path("data/examples")
#: Long side of the package-photo variants: about the model's input, so indexing stays quick.
VARIANT_SIDE = 256

#: label -> (package, file) of the package photographs the fallback dataset is made of.
PACKAGE_PHOTOS = {
    "cat": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "astronaut": ("skimage", "data/astronaut.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "brick": ("skimage", "data/brick.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "palace": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
#: The suggested query of each dataset: (label, file index in its folder, box as fractions of the image).
_IMAGENETTE_QUERY = ("English springer", 2, (0.18, 0.02, 0.70, 0.45))  # the dog's head
_PACKAGE_QUERY = ("cat", 0, (0.29, 0.27, 0.47, 0.50))  # the cat's left eye


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
    names = class_names(imagenette)

    def build(folder: Path) -> None:
        for synset, name in sorted(names.items()):
            (folder / name).mkdir()
            for source in _images(imagenette / synset)[:per_class]:
                shutil.copy2(source, folder / name / source.name)

    return _build_once(target, build)


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relative
    return path if path.is_file() else None


def photo_variants(photo: Image.Image, count: int, seed: int, side: int = VARIANT_SIDE) -> list[Image.Image]:
    """The whole photo, then ``count - 1`` random crops (40–85 % of its area), half of them mirrored."""
    rng = np.random.default_rng(seed)
    variants = [photo]
    width, height = photo.size
    for _ in range(count - 1):
        area = rng.uniform(0.40, 0.85)
        aspect = rng.uniform(0.75, 1.33)
        crop_w = min(width, round(width * np.sqrt(area * aspect)))
        crop_h = min(height, round(height * np.sqrt(area / aspect)))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        crop = photo.crop((left, top, left + crop_w, top + crop_h))
        variants.append(ImageOps.mirror(crop) if rng.random() < 0.5 else crop)
    sized = []
    for variant in variants:
        variant = variant.copy()
        variant.thumbnail((side, side), Image.Resampling.LANCZOS)
        sized.append(variant)
    return sized


def package_photo_set(target: Path, per_label: int = 8) -> Path:
    """Crops and flips of each package photograph, one folder per photograph, in ``target``."""
    sources = {label: _package_file(*where) for label, where in PACKAGE_PHOTOS.items()}
    sources = {label: path for label, path in sources.items() if path is not None}
    if len(sources) < 2:
        raise DatasetError("The example notebooks need scikit-image (and scikit-learn) for their photographs "
                           "when ../shared/datasets/imagenette-val is absent: pip install 'vfs[notebook]'.")

    def build(folder: Path) -> None:
        for label, path in sorted(sources.items()):
            (folder / label).mkdir()
            seed = zlib.crc32(label.encode())  # stable across runs and machines
            for number, variant in enumerate(photo_variants(load_image(path), per_label, seed)):
                variant.save(folder / label / f"{label}-{number:02d}.jpg", quality=90)

    return _build_once(target, build)


def example_dataset(root: str | Path | None = None, per_class: int = 40) -> ExampleData:
    """The notebooks' dataset: an imagenette-val subset when ``<root>/../shared`` has it, else package photos."""
    root = repo_root() if root is None else Path(root)
    imagenette = root.parent / IMAGENETTE
    if (imagenette / "classes.csv").is_file():
        path = imagenette_subset(imagenette, root / EXAMPLES_DIR / f"imagenette-val-{per_class}", per_class)
        description = (f"imagenette-val from {imagenette.resolve()}: the first {per_class} photos of each of its "
                       f"10 classes ({sum(1 for _ in path.glob('*/*'))} images)")
        label, number, fractions = _IMAGENETTE_QUERY
        from_shared = True
    else:
        path = package_photo_set(root / EXAMPLES_DIR / "package-photos")
        labels = _labels(path)
        description = (f"package photos ({imagenette} not found): {len(labels)} photographs shipped with "
                       f"scikit-image and scikit-learn, each cut into {len(_images(path / labels[0]))} crops and "
                       f"flips in a folder named after it ({sum(1 for _ in path.glob('*/*'))} images)")
        label, number, fractions = _PACKAGE_QUERY
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
