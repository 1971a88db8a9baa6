"""Uploaded query images kept on the server, so a link can name one for a collaborator.

An upload is stored once under the hex digest of its bytes; the link carries only that digest
(``u=``). The digest is the whole file name and is checked against a fixed pattern before any
file is opened, so a link cannot name anything else. Files are written atomically and never
changed. The folder is bounded: beyond ``max_bytes`` the uploads least recently stored or
opened are deleted (their links then say the image is gone). A read-only store opens uploads
but keeps no new ones. :class:`UploadSweeper` releases the server's in-memory copies that no
uploader claims.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vfs.errors import VfsError

#: Hex digits of the SHA-256 kept: short enough for a link, far too many to guess or collide.
UPLOAD_ID_LENGTH = 32
#: Uploads kept at most, in bytes, before the least recently used are deleted.
DEFAULT_MAX_BYTES = 2 * 1024**3
_UPLOAD_ID = re.compile(rf"[0-9a-f]{{{UPLOAD_ID_LENGTH}}}")


class UploadError(VfsError):
    """An upload that cannot be stored or found."""


def upload_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:UPLOAD_ID_LENGTH]


def is_upload_id(text: str) -> bool:
    return _UPLOAD_ID.fullmatch(text) is not None


class UploadStore:
    """A folder of uploaded images named by the digest of their bytes."""

    def __init__(self, folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, writable: bool = True):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.writable = writable

    def put(self, data: bytes) -> str:
        """Store ``data`` (checked by the caller) and return its id; storing it again is free."""
        if not self.writable:
            raise UploadError("This dashboard is read-only: uploads are not kept, so links cannot name them.")
        name = upload_id(data)
        target = self.folder / name
        if target.exists():
            target.touch()
            return name
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".upload-", delete=False) as handle:
                temporary = Path(handle.name)
                handle.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            raise UploadError(f"Could not keep the upload on this server: {exc.strerror or type(exc).__name__}") from None
        self._evict(keep=name)
        return name

    def get(self, name: str) -> bytes:
        if not is_upload_id(name):
            raise UploadError(f"{name[:40]!r} is not an upload id ({UPLOAD_ID_LENGTH} hexadecimal digits).")
        path = self.folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UploadError("The uploaded image this link names is no longer on this server.") from None
        except OSError as exc:
            raise UploadError(f"The uploaded image this link names cannot be read: {exc.strerror or exc}") from None
        if self.writable:
            with contextlib.suppress(OSError):
                path.touch()  # recently used: evicted last
        return data

    def _evict(self, keep: str) -> None:
        """Delete the least recently used uploads until the folder is within ``max_bytes``."""
        stored = []
        for entry in os.scandir(self.folder):
            if is_upload_id(entry.name):
                with contextlib.suppress(OSError):
                    status = entry.stat()
                    stored.append((status.st_mtime_ns, entry.name, status.st_size))
        total = sum(size for _, _, size in stored)
        for _, name, size in sorted(stored):
            if total <= self.max_bytes:
                break
            if name != keep:
                with contextlib.suppress(OSError):
                    (self.folder / name).unlink()
                total -= size


class UploadSweeper:
    """Releases the uploads a server session holds beyond its newest one, once older than ``grace`` seconds.

    The dashboard's uploader takes one file, so a session needs at most its newest upload; older ones
    are what a client that PUTs files the page never claims (or a replaced upload) leaves in the
    server's memory until the session ends. ``manager`` is Streamlit's uploaded-file manager, used
    through ``file_storage`` (session id → {file id → record}, in upload order) and ``remove_file``.
    """

    def __init__(self, manager: Any, grace: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.manager, self.grace, self.clock = manager, grace, clock
        self._first_seen: dict[tuple[str, str], float] = {}

    def sweep(self) -> int:
        """Release what is due; how many files were released."""
        now, released, present = self.clock(), 0, set()
        for session, files in list(self.manager.file_storage.items()):
            for file_id in list(files)[:-1]:  # all but the newest
                key = (session, file_id)
                present.add(key)
                if now - self._first_seen.setdefault(key, now) >= self.grace:
                    self.manager.remove_file(session, file_id)
                    released += 1
        self._first_seen = {key: seen for key, seen in self._first_seen.items() if key in present}
        return released

    def start(self, interval: float = 10.0) -> threading.Thread:
        """Sweep every ``interval`` seconds in a daemon thread, for the life of the server."""
        def run() -> None:
            while True:
                time.sleep(interval)
                self.sweep()

        thread = threading.Thread(target=run, name="vfs-upload-sweeper", daemon=True)
        thread.start()
        return thread
