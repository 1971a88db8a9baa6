"""vfs — Visual Feature Search: find where a vision model sees a drawn region across a dataset."""

from vfs.cache.feature_cache import CacheSpec, FeatureCache
from vfs.cache.indexing import IndexSummary, build_index
from vfs.errors import CacheError, DatasetError, ImageError, LayerError, MaskError, ModelError, VfsError
from vfs.feature_search import FeatureSearch, QueryRegion
from vfs.features.geometry import Box, box_to_grid, mask_to_grid, window_to_box
from vfs.features.images import load_image, scan_images
from vfs.features.models import DEFAULT_MODEL, FeatureModel, LayerInfo, list_models, load_model
from vfs.similarity.exact import Match, Query, SearchResult, get_backend, list_backends, register_backend, search

__version__ = "0.1.0"


def widget(*args, **kwargs):
    """The search as a notebook widget; see :func:`vfs.notebook.widget.widget` (needs ``pip install vfs[notebook]``)."""
    from vfs.notebook.widget import widget as make_widget  # anywidget is imported only by those who use it

    return make_widget(*args, **kwargs)


__all__ = [
    "Box", "CacheError", "CacheSpec", "DEFAULT_MODEL", "DatasetError", "FeatureCache", "FeatureModel",
    "FeatureSearch", "ImageError", "IndexSummary", "LayerError", "LayerInfo", "MaskError", "Match", "ModelError",
    "Query", "QueryRegion", "SearchResult", "VfsError", "box_to_grid", "build_index", "get_backend", "list_backends",
    "list_models", "load_image", "load_model", "mask_to_grid", "register_backend", "scan_images", "search",
    "widget", "window_to_box",
]
