"""A query region's features seen alone, without the photo around it.

At a late layer a cell's receptive field spans much of the image, so the cells under a query region
carry the query photo's surroundings as well as the region: a search then finds photos like the
whole scene (often of the same class) rather than the object itself, and misses the object pasted
or photographed elsewhere, above all at another size, where the surroundings cannot match.

The region *alone*: its pixels are pasted, at their place, onto each of a few background photos
(taken from the dataset, so the surroundings are the kind the object would be found in), each
composite is fed to the model, and the grids are averaged. What the backgrounds contribute differs
from photo to photo and averages out; what the region contributes is in every composite. The search
itself is unchanged: the same cosine, against the same cached dataset grids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from vfs.errors import MaskError
from vfs.features.models import FeatureModel, LayerInfo

#: Background photos a region is pasted onto: one batch of eight model passes. Four and sixteen did
#: no better in a probe (docs/queries.md, *Measured*).
BACKGROUNDS = 8


def region_box_of_mask(mask: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The pixel box (x0, y0, x1, y1) of ``image_size`` (width, height) that bounds a mask's selected
    weights; the mask may be at any resolution (a canvas, a grid)."""
    weights = np.asarray(mask, dtype=np.float32)
    rows, cols = np.nonzero(weights > 0)
    if rows.size == 0:
        raise MaskError("The mask selects nothing.")
    width, height = image_size
    sy, sx = height / weights.shape[0], width / weights.shape[1]
    return cols.min() * sx, rows.min() * sy, (cols.max() + 1) * sx, (rows.max() + 1) * sy


def region_alone_grid(model: FeatureModel, layer: LayerInfo, grid: int, image: Image.Image,
                      box: tuple[float, float, float, float], backgrounds: Sequence[Image.Image]) -> np.ndarray:
    """(C, grid, grid) float32, rounded through float16 like the cache: the grid of the region ``box``
    (pixels of ``image``) pasted at its place onto each background (resized to the model's input), averaged.
    Without backgrounds the region is pasted onto the model's mean colour (zero input)."""
    preprocessing = model.preprocessing
    height, width = preprocessing.input_size
    query = preprocessing.normalised(image)
    sx, sy = width / image.width, height / image.height
    x0, x1 = (min(max(round(v * sx), 0), width) for v in (box[0], box[2]))
    y0, y1 = (min(max(round(v * sy), 0), height) for v in (box[1], box[3]))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)  # a box thinner than an input pixel still keeps one
    composites = [preprocessing.normalised(photo) for photo in backgrounds] or [np.zeros_like(query)]
    for composite in composites:
        composite[y0:y1, x0:x1] = query[y0:y1, x0:x1]
    grids = model.grid_features(preprocessing.batch(composites), layer, grid)
    return grids.mean(dim=0).numpy().astype(np.float16).astype(np.float32)
