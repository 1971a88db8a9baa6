"""The cache lock works without POSIX-only modules, as on Windows."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, pathlib, tempfile
sys.modules["fcntl"] = None  # as on Windows: `import fcntl` raises ImportError
import vfs, vfs.cli, vfs.feature_search, vfs.cache.indexing, vfs.cache.mirror, vfs.dashboard.config
from vfs.cache.feature_cache import locked
folder = pathlib.Path(tempfile.mkdtemp())
with locked(folder):
    print("locked", (folder / ".lock").exists())
"""


def test_vfs_imports_and_locks_without_fcntl():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "locked True"
