"""vfs — Visual Feature Search: find where a vision model sees a drawn region across a dataset."""

from vfs.api import FeatureSearch
from vfs.cache import CacheSpec, FeatureCache
from vfs.errors import CacheError, DatasetError, ImageError, LayerError, MaskError, ModelError, VfsError
from vfs.geometry import Box, box_to_grid, mask_to_grid, window_to_box
from vfs.images import load_image, scan_images
from vfs.indexing import IndexSummary, build_index
from vfs.models import DEFAULT_MODEL, FeatureModel, LayerInfo, list_models, load_model
from vfs.search import Match, Query, SearchResult, get_backend, list_backends, register_backend, search

__version__ = "0.1.0"
__all__ = [
    "Box", "CacheError", "CacheSpec", "DEFAULT_MODEL", "DatasetError", "FeatureCache", "FeatureModel",
    "FeatureSearch", "ImageError", "IndexSummary", "LayerError", "LayerInfo", "MaskError", "Match", "ModelError",
    "Query", "SearchResult", "VfsError", "box_to_grid", "build_index", "get_backend", "list_backends",
    "list_models", "load_image", "load_model", "mask_to_grid", "register_backend", "scan_images", "search",
    "window_to_box",
]
