"""Why this match: the pixels of a result that drive its similarity score.

The model runs once more on the result image, this time with gradients. The chosen layer's map A
(C×h×w) is pooled to the G×G grid exactly as for the cache, the match's window is compared with
the query's weighted region by the search's own cosine (:func:`window_score`), and the score is
differentiated with respect to A. Two ways to turn that gradient into a map
(:data:`ATTRIBUTION_METHODS`):

* ``gradient×activation`` (the default): ``Σ_c ∂S/∂A_c(y, x) · A_c(y, x)`` at every position, the
  first-order share of the score of each position of the map. Only positions pooled into the
  window can change the score, so only they light up. The cosine ignores the window's overall
  scale, so these terms sum to zero: positive where a position agrees with the query *more* than
  the window as a whole, negative where it dilutes the match. The map keeps the positive part.
* ``grad-cam`` (Selvaraju et al., 2017): ``ReLU(Σ_c mean_yx(∂S/∂A_c) · A_c)``: the channels that
  raise the score, weighted by their gradient averaged over the map, drawn wherever they are
  active in the image, inside the window or not.

The map, scaled to [0, 1] by its maximum, is upsampled through the same full-image geometry as
the grid (the model sees the whole image resized, so position (i, j) of an h×w map covers
``[j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h)``), bilinearly between position centres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch
from vfs.features.images import load_image
from vfs.features.models import FeatureModel, LayerInfo
from vfs.similarity.exact import Match, Query


class AttributionError(VfsError):
    """A match that cannot be attributed: unknown method, a window off the grid, a featureless window."""


def _gradient_times_activation(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return (gradient * activation).sum(dim=0)


def _grad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return (gradient.mean(dim=(1, 2))[:, None, None] * activation).sum(dim=0)


#: Attribution maps from the layer's activation and the score's gradient, both (C, h, w) -> (h, w).
ATTRIBUTION_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradient×activation": _gradient_times_activation,
    "grad-cam": _grad_cam,
}
DEFAULT_METHOD = "gradient×activation"


def window_score(grid_features: torch.Tensor, query: Query, window: tuple[int, ...]) -> torch.Tensor:
    """The search's cosine between ``query``'s weighted region and the window at (top, left) of a (C, G, G) grid.

    Differentiable; computed in the grid's dtype. ``window`` may be a (top, left) pair or a
    :attr:`vfs.similarity.exact.Match.window`.
    """
    h, w = query.window_shape
    top, left = int(window[0]), int(window[1])
    grid = grid_features.shape[-1]
    if not (0 <= top <= grid - h and 0 <= left <= grid - w):
        raise AttributionError(f"A {h}×{w} window at row {top}, column {left} does not fit a {grid}×{grid} grid.")
    q_top, q_left, q_bottom, q_right = query.bounds
    weights = torch.from_numpy(query.weights).to(grid_features.device, grid_features.dtype)
    region = torch.from_numpy(query.features[:, q_top:q_bottom, q_left:q_right].astype(np.float64))
    region = region.to(grid_features.device, grid_features.dtype) * weights
    cells = grid_features[:, top:top + h, left:left + w] * weights
    window_norm = cells.norm()
    if window_norm.item() == 0.0:
        raise AttributionError("The matched window's features are all zero: there is nothing to attribute.")
    return (region * cells).sum() / (region.norm() * window_norm)


@dataclass(frozen=True)
class Attribution:
    """A match's score attributed to the positions of the layer's map."""

    layer_map: np.ndarray  # (h, w) float32 in [0, 1], the layer's resolution
    score: float  # the match's score, recomputed from the fresh (unrounded) activations
    method: str
    image_size: tuple[int, int]  # the original image's (width, height)

    def upsampled(self, size: tuple[int, int]) -> np.ndarray:
        """The map at (width, height) ``size``: the whole image, at any scale."""
        width, height = size
        tensor = torch.from_numpy(self.layer_map)[None, None]
        resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
        return resized[0, 0].clamp_(0.0, 1.0).numpy()

    @cached_property
    def heatmap(self) -> np.ndarray:
        """(H, W) float32 in [0, 1] over the original image's pixels."""
        return self.upsampled(self.image_size)


def score_attribution(model: FeatureModel, layer: LayerInfo, image: Image.Image, query: Query,
                      window: tuple[int, ...], method: str = DEFAULT_METHOD) -> Attribution:
    """Attribute the score of ``image``'s ``window`` against ``query`` (at ``layer``, the query's grid) to pixels.

    ``image`` is the dataset image as :func:`vfs.features.images.load_image` decodes it (the indexer's
    input); the grid size is the query's.
    """
    if method not in ATTRIBUTION_METHODS:
        raise AttributionError(f"Unknown attribution method {method!r}; available: {', '.join(ATTRIBUTION_METHODS)}.")
    grid = query.features.shape[-1]
    with model.differentiable_activation(model.preprocessing(image)[None], layer) as activation:
        pooled = F.adaptive_avg_pool2d(activation.float(), (grid, grid))[0]
        score = window_score(pooled.double(), query, window)
        (gradient,) = torch.autograd.grad(score, activation)
    raw = ATTRIBUTION_METHODS[method](activation[0].detach().double(), gradient[0].double())
    positive = raw.clamp(min=0.0)
    peak = float(positive.max())
    layer_map = (positive / peak if peak > 0 else positive).float().cpu().numpy()
    return Attribution(layer_map, float(score.detach()), method, image.size)


def match_attribution(search: FeatureSearch, query: Query, match: Match, method: str = DEFAULT_METHOD) -> Attribution:
    """Attribute a search result's score to the pixels of its image (decoded as the indexer decodes it)."""
    image = load_image(search.data / match.path)
    return score_attribution(search.model, search.layer, image, query, match.window, method)
