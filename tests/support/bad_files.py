"""The issue's corpus of awkward files, for tests that use each one as a query image.

The decodable and broken images come from ``test_images.make_messy_folder``; this adds what only
a path can be: a symlink loop and a file without read permission.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.features.test_images import make_messy_folder

#: Error fragments of the files a path can hold but an upload cannot (an upload is bytes).
PATH_ONLY = {"loop.jpg": "Too many levels of symbolic links", "locked.jpg": "permission denied"}


def make_bad_query_files(root: Path) -> dict[str, str]:
    """Write the corpus to ``root``; {name: "ok" or a fragment of the one-line error}."""
    expected = make_messy_folder(root)
    os.symlink("loop.jpg", root / "loop.jpg")
    (root / "locked.jpg").write_bytes((root / "rgb.jpg").read_bytes())
    (root / "locked.jpg").chmod(0)
    return expected | PATH_ONLY


@contextlib.contextmanager
def unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``path`` cannot be opened, even by root (which chmod 0 does not stop)."""
    target = str(path)
    original = builtins.open

    def guarded_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - builtins.open's signature
        if str(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return original(file, *args, **kwargs)

    with monkeypatch.context() as patch:
        if os.geteuid() == 0:
            patch.setattr(builtins, "open", guarded_open)
        yield
