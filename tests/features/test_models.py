import numpy as np
import pytest

from tests.support.data import package_photo
from vfs.errors import LayerError, ModelError
from vfs.features.images import load_image
from vfs.features.models import list_models, load_model

pytestmark = pytest.mark.torch  # timm's models, on PyTorch


def test_bundled_lite0_classifies_chelsea_as_a_cat(torch, lite0):
    image = load_image(package_photo("chelsea.png"))
    with torch.inference_mode():
        logits = lite0.network(lite0.preprocessing(image)[None].to(memory_format=torch.channels_last))
    top = int(logits.argmax())
    assert 281 <= top <= 285, f"ImageNet class {top} is not a cat"  # tabby .. Egyptian cat
    assert lite0.weights.startswith("bundled") and not lite0.untrained


def test_layers_list_every_intermediate_with_shapes(lite0):
    names = [layer.name for layer in lite0.layers]
    assert names == ["bn1"] + [f"blocks.{i}" for i in range(7)]
    assert (lite0.layer("blocks.5").channels, lite0.layer("blocks.5").height) == (192, 7)
    assert lite0.layer("blocks.4").describe() == "blocks.4 (112×14×14)"
    assert lite0.default_layer.name == "blocks.6"


def test_extracting_one_layer_matches_the_full_forward(torch, lite0):
    x = torch.randn(2, 3, 224, 224)
    layer = lite0.layer("blocks.4")
    with torch.inference_mode():
        everything = lite0._intermediates(x, None)
    pooled = lite0.grid_features(x, layer, 14)
    assert torch.allclose(pooled, everything[layer.index], atol=1e-5)
    assert lite0.grid_features(x, layer, 5).shape == (2, 112, 5, 5)


def test_unknown_layer_lists_the_valid_ones(lite0):
    with pytest.raises(LayerError, match=r"blocks\.6 \(320×7×7\)"):
        lite0.layer("block.6")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="Did you mean: .*resnet50"):
        load_model("resnet5")
    with pytest.raises(ModelError, match="Unknown pretrained tag"):
        load_model("resnet50.not_a_tag")


def test_missing_pretrained_weights_say_why_and_what_to_do(monkeypatch):
    monkeypatch.setattr("vfs.features.models._hub_reachable", lambda host="": False)  # as on an offline machine
    with pytest.raises(ModelError) as error:
        load_model("resnet18.a1_in1k")
    message = str(error.value)
    assert "\n" not in message and "resnet18.a1_in1k" in message
    assert "--weights" in message and "untrained" in message


def test_untrained_only_when_asked_and_labelled():
    model = load_model("resnet18", weights="untrained", device="cpu")
    assert model.untrained and model.label == "resnet18 (untrained)"
    assert [layer.name for layer in model.layers] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    again = load_model("resnet18", weights="untrained", device="cpu")
    assert again.fingerprint == model.fingerprint  # seeded, so caches of untrained models are reusable


def test_vit_tokens_come_back_as_grids(torch):
    model = load_model("vit_tiny_patch16_224", weights="untrained", device="cpu")
    assert len(model.layers) == 12
    assert all((layer.channels, layer.height, layer.width) == (192, 14, 14) for layer in model.layers)
    grid = model.grid_features(torch.zeros(1, 3, 224, 224), model.layer("blocks.3"), 7)
    assert grid.shape == (1, 192, 7, 7)


def test_local_weights_files_load_and_pickles_are_refused(torch, tmp_path, lite0):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in lite0.network.state_dict().items()}
    save_file(state, tmp_path / "lite0.safetensors")
    torch.save(state, tmp_path / "lite0.pth")
    for name in ("lite0.safetensors", "lite0.pth"):
        model = load_model("tf_efficientnet_lite0", weights=tmp_path / name, device="cpu")
        assert model.fingerprint == lite0.fingerprint and model.weights == f"file ({name})"

    class Payload:
        def __reduce__(self):
            return (print, ("arbitrary code ran",))

    torch.save({"weights": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="Cannot read weights file"):
        load_model("tf_efficientnet_lite0", weights=tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="does not fit"):
        load_model("resnet18", weights=tmp_path / "lite0.safetensors")


def test_bundled_weights_are_checked_shape_by_shape(torch, monkeypatch, lite0):
    from vfs.features import models

    real = models._read_weights_file

    def swapped(path):
        state = real(path)
        keys = list(state)
        state[keys[0]] = torch.zeros(1, 2, 3)
        return state

    monkeypatch.setattr(models, "_read_weights_file", swapped)
    with pytest.raises(ModelError, match="has shape"):
        load_model("tf_efficientnet_lite0")


def test_model_list_puts_bundled_first():
    names = list_models()
    assert names[:3] == ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
    assert "resnet50" in names and names.count("tf_efficientnet_lite0") == 1


def test_preprocessing_keeps_the_whole_image(lite0):
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, -20:] = 255  # a bright strip at the far right must survive (a centre crop would cut it)
    from PIL import Image

    tensor = lite0.preprocessing(Image.fromarray(wide))
    assert tensor.shape == (3, 224, 224)
    assert float(tensor[:, :, -5:].mean()) > 0.9 and float(tensor[:, :, :100].mean()) < -0.9


def test_hub_names_fail_offline_in_one_line(monkeypatch):
    monkeypatch.setattr("vfs.features.models._hub_reachable", lambda host="": False)
    with pytest.raises(ModelError) as error:
        load_model("hf-hub:timm/resnet18.a1_in1k")
    assert "\n" not in str(error.value) and "hf-hub:timm/resnet18.a1_in1k" in str(error.value)
