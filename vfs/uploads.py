"""Uploaded query images kept on the server, so a link can name one for a collaborator.

An upload is stored once under the hex digest of its bytes; the link carries only that digest
(``u=``). The digest is the whole file name and is checked against a fixed pattern before any
file is opened, so a link cannot name anything else. Files are written atomically and never
changed; deleting the folder only breaks the links that name its uploads.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from vfs.errors import VfsError

#: Hex digits of the SHA-256 kept: short enough for a link, far too many to guess or collide.
UPLOAD_ID_LENGTH = 32
_UPLOAD_ID = re.compile(rf"[0-9a-f]{{{UPLOAD_ID_LENGTH}}}")


class UploadError(VfsError):
    """An upload that cannot be stored or found."""


def upload_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:UPLOAD_ID_LENGTH]


def is_upload_id(text: str) -> bool:
    return _UPLOAD_ID.fullmatch(text) is not None


class UploadStore:
    """A folder of uploaded images named by the digest of their bytes."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def put(self, data: bytes) -> str:
        """Store ``data`` (checked by the caller) and return its id; storing it again is free."""
        name = upload_id(data)
        target = self.folder / name
        if target.exists():
            return name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".upload-", delete=False) as temporary:
                temporary.write(data)
            os.replace(temporary.name, target)
        except OSError as exc:
            raise UploadError(f"Could not keep the upload for links in {self.folder}: {exc.strerror or exc}") from None
        return name

    def get(self, name: str) -> bytes:
        if not is_upload_id(name):
            raise UploadError(f"{name[:40]!r} is not an upload id ({UPLOAD_ID_LENGTH} hexadecimal digits).")
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            raise UploadError("The uploaded image this link names is no longer on this server.") from None
        except OSError as exc:
            raise UploadError(f"The uploaded image this link names cannot be read: {exc.strerror or exc}") from None
