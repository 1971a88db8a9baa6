"""Exceptions raised by vfs. Each carries a message meant for the person at the keyboard."""


class VfsError(Exception):
    """Base class: anything vfs reports to a user as a one-line message rather than a traceback."""


class ModelError(VfsError):
    """A model name that does not exist, or weights that cannot be had."""


class WeightsUnavailableError(ModelError):
    """A model whose pretrained weights are neither on this machine nor downloadable now."""


class LayerError(VfsError):
    """A layer name the model does not expose."""


class ImageError(VfsError):
    """An image that cannot be decoded or is too large."""


class MaskError(VfsError):
    """A query region that is empty, malformed or outside the image."""


class CacheError(VfsError):
    """A feature cache that is missing, truncated, corrupt or was made by something else."""


class DatasetError(VfsError):
    """A dataset folder that is missing or holds no images."""
