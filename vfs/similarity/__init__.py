"""Region search over a feature cache: queries, exact search and its backends, approximate search.

Owns: the query region (:mod:`.region`), exact search behind interchangeable backends named in
one table (:mod:`.exact`), the one ranking rule (:mod:`.ranking`), the fused CPU kernel
(:mod:`.kernel`), several regions with negatives in one query (:mod:`.region_set`), objects at
other sizes through image-pyramid levels (:mod:`.scales`), sharded search (:mod:`.sharded`) and
the approximate first stage over a FAISS shortlist (:mod:`.approximate`).

May import: :mod:`vfs.cache`, :mod:`vfs.features`, :mod:`vfs.errors`. Never torch at module level:
a CPU search runs without it.
"""
