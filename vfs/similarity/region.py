"""A query region as the dashboard keeps it: a pixel box, or grid-cell weights.

A box stays exact at any grid. Free-hand strokes are stored as weights on the feature grid,
quantised to 1/255 so that the weights a shared link carries are exactly the weights searched.
Because a G×G grid partitions the whole image into equal rectangles, weights on one grid map
onto any other grid by area-averaging (:func:`vfs.features.geometry.mask_to_grid`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from vfs.errors import MaskError
from vfs.features.geometry import box_to_grid, mask_to_grid

#: Grid weights are stored as multiples of 1/WEIGHT_LEVELS (one byte per cell in a link).
WEIGHT_LEVELS = 255
_SLACK = 1e-6


def quantise_weights(weights: np.ndarray) -> np.ndarray:
    """Round weights in [0, 1] to multiples of 1/255, as float32."""
    levels = np.round(np.clip(np.asarray(weights, dtype=np.float64), 0.0, 1.0) * WEIGHT_LEVELS)
    return (levels / WEIGHT_LEVELS).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Region:
    """Exactly one of ``box`` (x0, y0, x1, y1 in whole image pixels) or ``grid_mask`` (G×G weights)."""

    box: tuple[int, int, int, int] | None = None
    grid_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.box is None) == (self.grid_mask is None):
            raise MaskError("A region is either a box or a grid mask.")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise MaskError(f"Box {self.box} is empty: it needs x0 < x1 and y0 < y1.")
        if self.grid_mask is not None:
            mask = self.grid_mask
            if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.size == 0:
                raise MaskError(f"A grid mask must be square, got shape {mask.shape}.")
            if not mask.any():
                raise MaskError("The region is empty: draw or give a region with some area.")

    @classmethod
    def from_box(cls, box: tuple[float, float, float, float]) -> Region:
        """The whole-pixel box that covers ``box``."""
        x0, y0, x1, y1 = (float(v) for v in box)
        # a hair of tolerance: canvas-to-image scaling leaves 256.00000001 where 256 was drawn
        return cls(box=(math.floor(x0 + _SLACK), math.floor(y0 + _SLACK),
                        math.ceil(x1 - _SLACK), math.ceil(y1 - _SLACK)))

    @classmethod
    def from_weights(cls, weights: np.ndarray) -> Region:
        return cls(grid_mask=quantise_weights(weights))

    def grid_weights(self, image_size: tuple[int, int], grid: int) -> np.ndarray:
        """The (grid, grid) weights of this region on a (width, height) image."""
        if self.box is not None:
            return box_to_grid(self.box, image_size, grid)
        assert self.grid_mask is not None
        return mask_to_grid(self.grid_mask, grid)

    def search_arguments(self, grid: int) -> dict[str, object]:
        """Keyword arguments for :meth:`vfs.feature_search.FeatureSearch.search`."""
        if self.box is not None:
            return {"box": self.box}
        assert self.grid_mask is not None
        return {"mask": mask_to_grid(self.grid_mask, grid)}

    def combined(self, other: Region, image_size: tuple[int, int], grid: int) -> Region:
        """Both regions at once on a (width, height) image: each grid cell keeps its larger weight."""
        mine, theirs = self.grid_weights(image_size, grid), other.grid_weights(image_size, grid)
        return Region.from_weights(np.maximum(mine, theirs))

    @property
    def token(self) -> str:
        """Equal for equal regions; used to recognise a search already run."""
        if self.box is not None:
            return "box:" + ",".join(str(v) for v in self.box)
        assert self.grid_mask is not None
        digest = hashlib.sha1(np.ascontiguousarray(self.grid_mask, dtype=np.float32).tobytes()).hexdigest()
        return f"mask{self.grid_mask.shape[0]}:{digest[:16]}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Region) and self.token == other.token

    def __hash__(self) -> int:
        return hash(self.token)
