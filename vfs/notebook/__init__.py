"""The search in notebooks: an anywidget widget (:mod:`.widget`) and match galleries (:mod:`.gallery`).

May import: :mod:`vfs.feature_search`, :mod:`vfs.similarity`, :mod:`vfs.features`,
:mod:`vfs.pictures`, :mod:`vfs.errors`. anywidget is imported only when a widget is made.
"""
