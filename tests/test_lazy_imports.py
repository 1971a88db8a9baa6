"""A search from a dataset image reads the cache without torch or the model; backends of other
modules are imported on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vfs.feature_search import MODEL_CARDS, FeatureSearch
from vfs.similarity import kernel
from vfs.similarity.exact import _GPU_DEVICE_FILES, TorchBackend

LAYER, GRID = "blocks.4", 4
BOX = (100, 40, 300, 200)
REPO = Path(__file__).resolve().parent.parent

SEARCH = r"""
import json, sys
import vfs
data, cache_dir, layer, grid, query = sys.argv[1:]
fs = vfs.FeatureSearch(data, layer=layer, grid=int(grid), cache_dir=cache_dir)
result = fs.search(query, box=(100, 40, 300, 200), top_k=9)
print(json.dumps({"torch": "torch" in sys.modules, "timm": "timm" in sys.modules, "model_loaded": fs._model is not None,
                  "backend": result.backend, "scores": result.scores.tolist(), "windows": result.windows.tolist(),
                  "matches": [[m.index, list(m.window)] for m in result.matches]}))
"""


def python(code: str, *args: object, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A small real dataset, indexed through the API (which saves the model's card)."""
    from tests.support.data import package_photo

    root = tmp_path_factory.mktemp("lazy")
    data = root / "photos"
    for folder, names in {"animals": ["chelsea.png", "astronaut.png"], "objects": ["coffee.png", "rocket.jpg"],
                          "textures": ["brick.png", "grass.png"]}.items():
        (data / folder).mkdir(parents=True)
        for name in names:
            (data / folder / name).write_bytes(package_photo(name).read_bytes())
    fs = FeatureSearch(data, layer=LAYER, grid=GRID, cache_dir=root / "cache")
    fs.index(batch_size=4)
    return fs


@pytest.mark.torch  # indexing runs the model
def test_dataset_query_in_a_fresh_process_needs_no_torch(indexed):
    if kernel.load() is None:
        pytest.skip(f"the fused kernel is unavailable here ({kernel.error}), so search runs on torch")
    assert list((indexed.cache_dir / MODEL_CARDS).glob("*.json"))  # saved when the model was loaded
    query = indexed.data / "animals" / "chelsea.png"
    args = (indexed.data, indexed.cache_dir, LAYER, GRID, query)
    lazy = python(SEARCH, *args)
    assert not lazy["torch"] and not lazy["timm"] and not lazy["model_loaded"]
    assert lazy["backend"] == kernel.load().backend  # fused-<isa>: named by what ran

    fused = indexed.search(query, box=BOX, top_k=9)  # the same search in this process, torch loaded
    np.testing.assert_array_equal(np.array(lazy["scores"], np.float32), fused.scores)
    np.testing.assert_array_equal(lazy["windows"], fused.windows)
    assert lazy["matches"] == [[m.index, list(m.window)] for m in fused.matches]

    chunked = FeatureSearch(indexed.data, model=indexed.model, layer=LAYER, grid=GRID, cache_dir=indexed.cache_dir,
                            backend=TorchBackend("cpu", strategy="conv")).search(query, box=BOX, top_k=9)
    without_kernel = python(SEARCH, *args, env={"VFS_NATIVE": "0"})  # the PyTorch scan, in a fresh process
    assert without_kernel["torch"] and without_kernel["backend"] == "torch-cpu"
    for torch_path in (chunked, without_kernel):
        scores = torch_path.scores if torch_path is chunked else np.array(torch_path["scores"], np.float32)
        matches = ([[m.index, list(m.window)] for m in torch_path.matches] if torch_path is chunked
                   else torch_path["matches"])
        assert matches == lazy["matches"]
        np.testing.assert_allclose(scores, lazy["scores"], atol=1e-6)


@pytest.mark.torch
def test_the_model_is_loaded_only_for_a_query_outside_the_cache(indexed):
    lazy = FeatureSearch(indexed.data, layer=LAYER, grid=GRID, cache_dir=indexed.cache_dir)
    assert lazy._model is None and lazy.spec == indexed.spec and lazy.cache_path == indexed.cache_path
    query = indexed.data / "objects" / "coffee.png"
    from_cache = lazy.search(query, box=(0, 0, 200, 150), top_k=3)
    assert lazy._model is None and from_cache.matches[0].path == "objects/coffee.png"

    upload = query.read_bytes()  # the same picture, but not a dataset path: features need the model
    uploaded = lazy.search(upload, box=(0, 0, 200, 150), top_k=3)
    assert lazy._model is not None
    assert uploaded.matches == indexed.search(upload, box=(0, 0, 200, 150), top_k=3).matches


@pytest.mark.torch
def test_an_out_of_date_card_gives_way_to_the_model(indexed):
    (card_file,) = (indexed.cache_dir / MODEL_CARDS).glob("*.json")
    saved = card_file.read_text()
    record = json.loads(saved)
    record["card"]["fingerprint"] = "0123456789abcdef"  # as if the weights had changed since it was saved
    card_file.write_text(json.dumps(record))
    try:
        stale = FeatureSearch(indexed.data, layer=LAYER, grid=GRID, cache_dir=indexed.cache_dir)
        assert stale._model is None and stale.spec.fingerprint == "0123456789abcdef"
        # no cache where the stale card points: the model is loaded and decides
        result = stale.search(indexed.data / "animals" / "chelsea.png", box=BOX, top_k=2)
        assert stale._model is not None and stale.spec == indexed.spec and stale.cache_path == indexed.cache_path
        assert result.matches[0].path == "animals/chelsea.png"
        assert json.loads(card_file.read_text())["card"]["fingerprint"] == indexed.spec.fingerprint  # saved anew
    finally:
        card_file.write_text(saved)


def test_backends_of_other_modules_load_on_first_use():
    got = python("""
import json, sys
from vfs.similarity.exact import get_backend, list_backends
listed, before = list_backends(), "vfs.similarity.sharded" in sys.modules
backend = get_backend("sharded")
print(json.dumps({"listed": listed, "before": before, "name": backend.name, "torch": "torch" in sys.modules}))
""")
    assert {"sharded", "ray-sharded"} <= set(got["listed"]) and not got["before"]
    assert got["name"] == "sharded-torch-cpu"
    assert not got["torch"] or kernel.load() is None


def test_auto_backend_is_cuda_only_with_a_cuda_device(torch):
    got = python("""
import json, sys
from vfs.similarity.exact import default_backend, get_backend
print(json.dumps({"default": default_backend(), "auto": get_backend("auto").name, "torch": "torch" in sys.modules}))
""")
    expected = "torch-cuda" if torch.cuda.is_available() else "torch-cpu"
    assert got["default"] == got["auto"] == expected
    if not any(map(os.path.exists, _GPU_DEVICE_FILES)):  # no GPU driver: the answer needs no torch
        assert not got["torch"]
