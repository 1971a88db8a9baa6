"""Feature caches: a layer's pooled grids over a dataset, as memory-mapped Arrow IPC shards.

Owns: the on-disk format and reading it zero-copy (:mod:`.feature_cache`), indexing — building
and updating a cache incrementally and crash-safely (:mod:`.indexing`) —, the caches on disk
(:mod:`.catalog`) and caches kept on object storage (:mod:`.mirror`).

May import: :mod:`vfs.features`, :mod:`vfs.errors`.
"""
