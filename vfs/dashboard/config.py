"""How the dashboard was started: command line, environment and deployment file, read once per server."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vfs.cache.indexing import DEFAULT_CACHE_DIR
from vfs.dashboard.demo import DEMO_DIR
from vfs.dashboard.deployment import Access, Deployment, UploadLimits, check_model_name, load_deployment
from vfs.dashboard.selection import resolve_dataset
from vfs.dashboard.uploads import UploadStore

UPLOADS_FOLDER = "uploads"


_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppConfig:
    data: Path | None  # None: the demo dataset, or the deployment's default dataset
    cache_dir: Path
    read_only: bool  # never build or delete caches
    deployment: Deployment | None = None  # None: a local tool that opens any folder and any model

    @property
    def default_dataset(self) -> Path:
        if self.data is not None:
            return self.data
        return self.deployment.default_dataset if self.deployment is not None else DEMO_DIR

    @property
    def uploads(self) -> UploadLimits:
        return self.deployment.uploads if self.deployment is not None else UploadLimits()

    @property
    def upload_store(self) -> UploadStore:
        """Where uploads are kept for links, next to the caches (read-only: opened, never added to)."""
        return UploadStore(self.cache_dir / UPLOADS_FOLDER, writable=not self.read_only)

    def resolve_dataset(self, text: str) -> Path:
        """The dataset folder ``text`` names; a deployment confines it to its roots."""
        return resolve_dataset(text) if self.deployment is None else self.deployment.datasets.resolve(text)

    def resolve_model(self, name: str) -> tuple[str, Path | None]:
        """The timm architecture a model picker's ``name`` stands for, and its weights file if it names one.

        A deployment refuses names it does not allow (:class:`vfs.dashboard.deployment.ModelNotAllowed`).
        """
        return (check_model_name(name.strip()), None) if self.deployment is None else self.deployment.models.resolve(name)

    def access(self, user: Mapping[str, object]) -> Access:
        """Whether the visitor whose ``st.user`` is ``user`` sees the dashboard."""
        return Access.OPEN if self.deployment is None else self.deployment.sign_in.access(user)


def parse_app_args(argv: Sequence[str], environ: Mapping[str, str]) -> AppConfig:
    """``streamlit run app.py -- [--config FILE] [--data DIR] [--cache-dir DIR] [--read-only]``.

    Each option falls back to an environment variable (VFS_CONFIG, VFS_DATA, VFS_CACHE_DIR,
    VFS_READ_ONLY). A deployment file (see :mod:`vfs.dashboard.deployment`) sets the defaults; the options
    override them but cannot widen it: ``--data`` must lie inside its roots and read-only stays on.
    Unknown arguments are ignored: under a test runner, argv belongs to the runner.
    """
    parser = argparse.ArgumentParser(prog="streamlit run app.py --", allow_abbrev=False, add_help=False)
    parser.add_argument("--config", default=environ.get("VFS_CONFIG") or None)
    parser.add_argument("--data", default=environ.get("VFS_DATA") or None)
    parser.add_argument("--cache-dir", default=environ.get("VFS_CACHE_DIR") or None)
    parser.add_argument("--read-only", action="store_true",
                        default=environ.get("VFS_READ_ONLY", "").strip().lower() in _TRUE)
    args, _ = parser.parse_known_args(list(argv))
    deployment = load_deployment(args.config) if args.config else None
    data = Path(args.data).expanduser() if args.data else None
    if deployment is not None and data is not None:
        data = deployment.datasets.resolve(data)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else (
        deployment.cache_dir if deployment is not None and deployment.cache_dir is not None else DEFAULT_CACHE_DIR)
    read_only = args.read_only or (deployment is not None and deployment.read_only) or not is_writable(cache_dir)
    return AppConfig(data, cache_dir, read_only, deployment)


def is_writable(folder: Path) -> bool:
    """Whether ``folder`` can be written, or created inside its nearest existing parent."""
    probe = folder.expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK)
