"""A shared deployment of the dashboard: what its visitors may open, set in one TOML file.

``streamlit run app.py -- --config vfs.toml`` (or ``VFS_CONFIG=vfs.toml``). Without a file the
dashboard is a local tool that opens any folder and any model. With one, visitors can open only
the dataset folders inside its roots (after following symlinks), only the models it allows, and
uploads within its limits; it can be read-only and require sign-in. docs/deploy.md describes
every key; deploy/vfs.example.toml is a complete example.

Relative paths in the file are relative to the file's own folder.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NoReturn

from vfs.dashboard.demo import DEMO_DIR
from vfs.errors import DatasetError, ModelError, VfsError
from vfs.features.images import DEFAULT_MAX_PIXELS
from vfs.features.models import DEFAULT_MODEL

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as a package before it joined the standard library
    import tomli as tomllib

#: Weights files a models folder may hold; both are read without unpickling arbitrary objects.
WEIGHTS_SUFFIXES = (".safetensors", ".pth")
#: A weights file is named ``<timm name>[--<anything>].<suffix>``.
ARCHITECTURE_SEPARATOR = "--"
#: The model picker names models-folder files with this prefix, e.g. ``file:resnet50--birds.safetensors``.
FILE_PREFIX = "file:"
MAX_UPLOAD_MB_LIMIT = 1024
#: How long a dataset folder's links are trusted before they are checked again.
_RECHECK_SECONDS = 30

# Text that still holds percent-encoded dots, separators or NUL was not meant as a plain path:
# it is refused, never decoded (decoding twice is how traversal slips past checks).
_ENCODED = re.compile(r"%(?:2e|2f|5c|00)", re.IGNORECASE)
# A timm name (``resnet50.a1_in1k``) or a Hugging Face Hub one (``hf-hub:org/name``): checked before timm or
# huggingface_hub sees it, so ``hf-hub:timm/../../x`` never reaches them, whatever a glob in ``allow`` matches.
_MODEL_NAME = re.compile(r"(?:hf-hub:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class DeploymentError(VfsError):
    """A deployment file that cannot be used: names the file, the key and what is wrong."""


class OutsideRootsError(DatasetError):
    """A dataset path outside the folders the deployment serves."""


class ModelNotAllowed(ModelError):
    """A model the deployment does not offer."""


def check_model_name(name: str) -> str:
    """``name`` if it has the shape of a timm or ``hf-hub:org/name`` model name; :class:`ModelError` otherwise."""
    if not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise ModelError(f"Model {name[:200]!r} is not a model name: a timm name (letters, digits, . _ -) or "
                         "hf-hub:<organisation>/<name>.")
    return name


def _plain_path(text: str, what: str) -> str:
    """``text`` if it is an ordinary path; encoded or ambiguous forms are refused, not interpreted."""
    if "\x00" in text:
        raise DatasetError(f"The {what} contains a NUL character.")
    if _ENCODED.search(text):
        raise DatasetError(f"The {what} {text[:80]!r} looks URL-encoded (%2e, %2f, %5c or %00); "
                           "give the path as plain text.")
    if "\\" in text:
        raise DatasetError(f"The {what} {text[:80]!r} contains a backslash; separate folders with /.")
    return text


def _real(path: Path) -> tuple[Path, bool]:
    """The path with every symlink and ``..`` resolved, and whether it exists."""
    try:
        return Path(os.path.realpath(path, strict=True)), True
    except OSError:  # missing, a symlink loop, a name too long, no permission
        return Path(os.path.realpath(path)), False


@dataclass(frozen=True)
class DatasetRoots:
    """The folders a deployment serves; a dataset is any folder inside one of them."""

    roots: tuple[Path, ...]  # real paths (symlinks resolved)

    def contains(self, real: Path) -> bool:
        """Whether ``real`` (a path with its symlinks resolved) is a root or inside one."""
        return ".." not in real.parts and any(real == root or real.is_relative_to(root) for root in self.roots)

    def resolve(self, text: str | Path) -> Path:
        """The real dataset folder ``text`` names (relative to the working directory), if it is served.

        The check is made on the path with symlinks resolved, so ``..``, absolute paths and links
        that lead out of a root are all refused with the same message, whether or not the target
        exists (the message never says what lies outside). A folder holding links that lead out
        is refused too, before anything outside is listed (see :meth:`outward_links`).
        """
        raw = str(text).strip()
        if not raw:
            raise DatasetError("Give a dataset folder.")
        path = Path(_plain_path(raw, "dataset folder"))
        real, exists = _real(path if path.is_absolute() else Path.cwd() / path)
        if not self.contains(real):
            raise OutsideRootsError(f"{raw[:200]!r} is outside the dataset folders this deployment serves; "
                                    "pick one from the list.")
        if not exists:
            raise DatasetError(f"Dataset folder {raw} does not exist.")
        if not real.is_dir():
            raise DatasetError(f"{raw} is a file, not a folder of images.")
        outward = _outward_links(self, real, int(time.monotonic() // _RECHECK_SECONDS))
        if outward:  # scanning the folder would follow them out of the roots
            raise OutsideRootsError(f"{raw[:200]} holds links that lead outside the served folders "
                                    f"({', '.join(outward[:3])}{', …' if len(outward) > 3 else ''}); "
                                    "this deployment does not open it.")
        return real

    def outward_links(self, folder: Path) -> list[str]:
        """Symlinks under ``folder`` that lead out of every root, as paths relative to it.

        Links that stay inside the roots are followed (each real folder once), like the dataset
        scan follows them; links that leave are not, so nothing outside is listed. Hidden names
        are skipped, as the scan skips them.
        """
        found: list[str] = []
        visited: set[Path] = set()

        def walk(path: Path, relative: str) -> None:
            real = _real(path)[0]
            if real in visited:
                return
            visited.add(real)
            try:
                entries = sorted(os.scandir(path), key=lambda entry: entry.name)
            except OSError:
                return
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                child = f"{relative}/{entry.name}" if relative else entry.name
                if entry.is_symlink() and not self.contains(_real(Path(entry.path))[0]):
                    found.append(child)
                    continue
                try:
                    if entry.is_dir():
                        walk(Path(entry.path), child)
                except OSError:
                    continue

        walk(folder, "")
        return found

    def choices(self) -> list[Path]:
        """Every root and the visible folders directly inside it that :meth:`resolve` opens, for a picker."""
        found: list[Path] = []
        period = int(time.monotonic() // _RECHECK_SECONDS)
        for root in self.roots:
            found.append(root)
            try:
                entries = sorted(os.scandir(root), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                try:
                    folder = not entry.name.startswith(".") and entry.is_dir()
                except OSError:  # a symlink loop
                    continue
                if folder and self.contains(_real(Path(entry.path))[0]):
                    found.append(Path(entry.path))
        # a folder holding links that lead out is refused when chosen, so it is not offered
        return [folder for folder in dict.fromkeys(found) if not _outward_links(self, _real(folder)[0], period)]


@functools.lru_cache(maxsize=64)
def _outward_links(roots: DatasetRoots, folder: Path, period: int) -> tuple[str, ...]:
    """:meth:`DatasetRoots.outward_links`, walked again once ``period`` (a time slot) changes."""
    return tuple(roots.outward_links(folder))


@dataclass(frozen=True)
class WeightsFile:
    architecture: str  # the timm name the file's stem starts with
    path: Path


@dataclass(frozen=True)
class ModelPolicy:
    """The models a deployment offers: timm/hf-hub names matching ``allow``, and files in ``folder``."""

    allow: tuple[str, ...]  # glob patterns over model names
    default: str
    folder: Path | None = None  # real path

    def weights_files(self) -> dict[str, WeightsFile]:
        """``file:<path in the folder>`` -> the file; links that lead out of the folder are left out."""
        if self.folder is None or not self.folder.is_dir():
            return {}
        found = {}
        for path in sorted(self.folder.rglob("*")):
            relative = path.relative_to(self.folder)
            real, exists = _real(path)
            if (path.suffix not in WEIGHTS_SUFFIXES or not exists or not real.is_file()
                    or any(part.startswith(".") for part in relative.parts)
                    or not real.is_relative_to(self.folder)):
                continue
            architecture = path.name.removesuffix(path.suffix).split(ARCHITECTURE_SEPARATOR)[0]
            found[FILE_PREFIX + relative.as_posix()] = WeightsFile(architecture, real)
        return found

    def allows(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.allow)

    def choices(self, known: Sequence[str]) -> list[str]:
        """The default, then known names the patterns allow, patterns that are plain names, then files."""
        listed = [name for name in known if self.allows(name)]
        literal = [pattern for pattern in self.allow if not any(c in pattern for c in "*?[")]
        return list(dict.fromkeys([self.default, *listed, *literal, *self.weights_files()]))

    def resolve(self, name: str) -> tuple[str, Path | None]:
        """The timm name to load and the weights file (None: the name's own weights), if allowed."""
        name = name.strip()
        if name.startswith(FILE_PREFIX):
            weights = self.weights_files().get(name)
            if weights is None:
                raise ModelNotAllowed(f"{name[len(FILE_PREFIX):][:200]!r} is not a weights file in this "
                                      "deployment's models folder.")
            return weights.architecture, weights.path
        if not self.allows(check_model_name(name)):
            files = " or a weights file from the list" if self.folder is not None else ""
            raise ModelNotAllowed(f"Model {name[:200]!r} is not offered by this deployment; pick one matching "
                                  f"{', '.join(self.allow)}{files}.")
        return name, None


#: Bytes in the uploader's MB: Streamlit's browser code counts 1,000,000 (outside Windows), so the app does too;
#: its server caps the body at ``server.maxUploadSize`` MiB, a little more, which bounds the memory an upload takes.
BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class UploadLimits:
    max_mb: int = 20  # MB of BYTES_PER_MB; .streamlit/config.toml sets server.maxUploadSize to the same
    max_pixels: int = 40_000_000

    @property
    def max_bytes(self) -> int:
        return self.max_mb * BYTES_PER_MB

    def server_problem(self, server_max_mb: int) -> str | None:
        """Why Streamlit's ``server.maxUploadSize`` (``server_max_mb``) does not enforce these limits, or None.

        Only the server's limit stops a client that bypasses the uploader before the body is in memory.
        """
        if server_max_mb <= self.max_mb:
            return None
        return (f"Streamlit accepts uploads of up to {server_max_mb} MB but this deployment allows {self.max_mb} MB: "
                f"set maxUploadSize = {self.max_mb} under [server] in .streamlit/config.toml "
                f"(or run with --server.maxUploadSize {self.max_mb}).")


class Access(Enum):
    """Whether a visitor sees the dashboard."""

    OPEN = "open"  # the deployment does not require sign-in, or the visitor has signed in and is allowed
    SIGN_IN = "sign in"  # sign-in is required and the visitor has not signed in
    DENIED = "denied"  # signed in, but the e-mail address is not on the allowed list
    NOT_CONFIGURED = "not configured"  # sign-in is required but Streamlit's [auth] secrets are missing


@dataclass(frozen=True)
class SignIn:
    require_login: bool = False
    provider: str | None = None  # a named provider ([auth.<provider>] in secrets.toml); None: [auth] itself
    allowed_emails: tuple[str, ...] = ()  # glob patterns; empty: whoever the provider signs in

    def access(self, user: Mapping[str, Any]) -> Access:
        """The decision for a visitor whose ``st.user`` is ``user``.

        Streamlit adds ``is_logged_in`` to ``st.user`` only when ``[auth]`` is configured in
        secrets.toml, so its absence means sign-in cannot work: the dashboard stays closed.
        """
        if not self.require_login:
            return Access.OPEN
        if "is_logged_in" not in user:
            return Access.NOT_CONFIGURED
        if not user["is_logged_in"]:
            return Access.SIGN_IN
        email = str(user.get("email") or "")
        if self.allowed_emails and (user.get("email_verified") is False or not any(
                fnmatchcase(email.lower(), p.lower()) for p in self.allowed_emails)):
            return Access.DENIED  # an address the provider says it has not verified proves nothing
        return Access.OPEN


@dataclass(frozen=True)
class Deployment:
    source: Path  # the file it was read from
    datasets: DatasetRoots
    default_dataset: Path
    demo: bool  # the demo dataset (data/clothing) is one of the roots
    models: ModelPolicy
    uploads: UploadLimits
    read_only: bool
    cache_dir: Path | None
    sign_in: SignIn


class _Reader:
    """Typed access to one TOML table, with errors that name the file and the key."""

    def __init__(self, source: Path, table: Mapping[str, Any], section: str, known: Iterable[str]) -> None:
        self.source, self.table, self.section = source, table, section
        unknown = sorted(set(table) - set(known))
        if unknown:
            self.fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")

    def fail(self, key: str, problem: str) -> NoReturn:
        where = f"[{self.section}] {key}" if self.section else key
        raise DeploymentError(f"{self.source}: {where}: {problem}.")

    def path(self, text: str) -> Path:
        """Relative paths are relative to the configuration file's folder."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.source.parent / path

    def get(self, key: str, kind: type, default: Any, check: Callable[[Any], str | None] = lambda _: None) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):  # True is an int in Python
            self.fail(key, f"expected {_KIND_NAMES[kind]}, got {type(value).__name__} {value!r}")
        problem = check(value)
        if problem:
            self.fail(key, problem)
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        values = self.get(key, list, list(default))
        for value in values:
            if not isinstance(value, str) or not value.strip():
                self.fail(key, f"expected a list of non-empty strings, found {value!r}")
        return tuple(values)

    def folder(self, text: str, key: str) -> Path:
        if "\x00" in text:
            self.fail(key, "the path contains a NUL character")
        real, exists = _real(self.path(text))
        if not exists or not real.is_dir():
            self.fail(key, f"{text} is not an existing folder")
        return real


_KIND_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", dict: "a table"}
_SECTIONS = {"read_only": bool, "datasets": dict, "models": dict, "cache": dict, "uploads": dict, "auth": dict}


def _between(low: int, high: int) -> Callable[[int], str | None]:
    return lambda value: None if low <= value <= high else f"must be from {low:,} to {high:,}, got {value:,}"


def parse_deployment(text: str, source: Path) -> Deployment:
    """The deployment described by TOML ``text`` (read from ``source``)."""
    source = Path(source).absolute()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentError(f"{source}: not valid TOML ({exc}).") from None
    top = _Reader(source, document, "", _SECTIONS)
    sections = {name: top.get(name, kind, {} if kind is dict else False) for name, kind in _SECTIONS.items()}

    datasets = _Reader(source, sections["datasets"], "datasets", ("roots", "default", "demo"))
    demo = datasets.get("demo", bool, False)
    named = [datasets.folder(text, "roots") for text in datasets.strings("roots", ())]
    if not named and not demo:
        datasets.fail("roots", "give at least one dataset folder (or set demo = true)")
    roots = DatasetRoots(tuple(dict.fromkeys(named + ([_real(DEMO_DIR.absolute())[0]] if demo else []))))
    default_text = datasets.get("default", str, None)
    if default_text is None:
        default = roots.roots[0]
    else:
        default = datasets.folder(default_text, "default")
        if not roots.contains(default):
            datasets.fail("default", f"{default_text} is not inside any of the roots")

    models = _Reader(source, sections["models"], "models", ("allow", "default", "folder"))
    allow = models.strings("allow", (DEFAULT_MODEL,))
    folder_text = models.get("folder", str, None)
    folder = None if folder_text is None else models.folder(folder_text, "folder")
    policy = ModelPolicy(allow, DEFAULT_MODEL, folder)
    model_default = models.get("default", str, DEFAULT_MODEL if policy.allows(DEFAULT_MODEL) else None)
    if model_default is None:
        models.fail("default", f"give the model the dashboard opens with ({DEFAULT_MODEL} is not allowed)")
    if not (policy.allows(model_default) or model_default in policy.weights_files()):
        models.fail("default", f"{model_default!r} is neither allowed by `allow` nor a file in `folder`")
    policy = ModelPolicy(allow, model_default, folder)

    uploads = _Reader(source, sections["uploads"], "uploads", ("max_mb", "max_pixels"))
    limits = UploadLimits(uploads.get("max_mb", int, UploadLimits.max_mb, _between(1, MAX_UPLOAD_MB_LIMIT)),
                          uploads.get("max_pixels", int, UploadLimits.max_pixels, _between(1, DEFAULT_MAX_PIXELS)))

    cache = _Reader(source, sections["cache"], "cache", ("dir",))
    cache_text = cache.get("dir", str, None, lambda v: None if v.strip() else "must not be empty")

    auth = _Reader(source, sections["auth"], "auth", ("require_login", "provider", "allowed_emails"))
    sign_in = SignIn(auth.get("require_login", bool, False),
                     auth.get("provider", str, None, lambda v: None if v.strip() else "must not be empty"),
                     auth.strings("allowed_emails", ()))

    return Deployment(source=source, datasets=roots, default_dataset=default, demo=demo, models=policy,
                      uploads=limits, read_only=sections["read_only"],
                      cache_dir=None if cache_text is None else cache.path(cache_text), sign_in=sign_in)


def load_deployment(path: str | Path) -> Deployment:
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DeploymentError(f"{path}: cannot read the deployment file ({reason}).") from None
    return parse_deployment(text, path)
