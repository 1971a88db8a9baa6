"""What a search means: labels, agreement between setups, units, attribution, the dataset map.

Owns: score distributions and label vote (:mod:`.labels`), best matches within a subset
(:mod:`.subset`), rank agreement between two searches (:mod:`.rank_agreement`), one region across
several setups (:mod:`.setup_comparison`), channels and their top patches (:mod:`.units`), why a
match scores as it does (:mod:`.attribution`), the modes of a search's matches
(:mod:`.match_modes`), and hierarchical clusters of a dataset (:mod:`.dataset_map`).

May import: :mod:`vfs.feature_search`, :mod:`vfs.similarity`, :mod:`vfs.cache`,
:mod:`vfs.features`, :mod:`vfs.errors`. No Streamlit, no plotting.
"""
