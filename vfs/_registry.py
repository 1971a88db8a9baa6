"""Named implementations, imported when first asked for: the one plugin mechanism of vfs.

Search backends and extraction engines are both a :class:`Registry`: a table from a name to
``"module:attribute"`` (or to a callable, for plugins registered at run time). A table entry
names its module as a string, so the module holding the table never imports the
implementations, and an optional dependency (Ray, CUDA) is imported only by those who pick it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from vfs.errors import VfsError

T = TypeVar("T")


class Registry(Generic[T]):
    """``name → factory``; ``kind`` names what is registered in error messages ("search backend")."""

    def __init__(self, kind: str, table: dict[str, str | Callable[..., T]]):
        self.kind = kind
        self._table = dict(table)

    def register(self, name: str, factory: str | Callable[..., T]) -> None:
        """``factory`` is a callable, or ``"module:attribute"`` naming one, imported on first use."""
        self._table[name] = factory

    def names(self) -> list[str]:
        return list(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table

    def create(self, name: str, *args, **kwargs) -> T:
        if name not in self._table:
            raise VfsError(f"Unknown {self.kind} {name!r}; available: {', '.join(self._table)}")
        factory = self._table[name]
        if isinstance(factory, str):
            module, attribute = factory.split(":")
            factory = getattr(importlib.import_module(module), attribute)
        return factory(*args, **kwargs)
