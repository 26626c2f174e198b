"""The training engine and whole runs: history, checkpoints, resume, weight transfer, bad images."""

import json
import os

import pandas as pd
import pytest
import torch

from landslide.config import parse_config
from landslide.errors import ConfigError, DataError
from landslide.models.checkpoint import load_checkpoint
from landslide.training.run import run_training
from tests.conftest import tiny_config


def test_run_writes_self_describing_folder(trained_run):
    out = trained_run["output_dir"]
    for rel in ("config.yaml", "splits.csv", "history.json", "summary.json", "skipped_images.json",
                "model/model.safetensors", "model/model_card.json", "eval/metrics.json", "eval/report.md",
                "eval/confusion_matrix.png", "eval/roc_curve.png", "eval/pr_curve.png", "eval/training_curves.png",
                "eval/predictions.csv"):
        assert os.path.exists(os.path.join(out, rel)), rel
    history = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in history] == [0, 1]
    assert {"train_loss", "val_loss", "lr", "train_images_per_s"} <= set(history[0])
    card = json.load(open(os.path.join(out, "model/model_card.json")))
    assert card["threshold_selection"]["chosen_on"] == "validation"
    assert card["training"]["data"]["samples"] == 24 and "test" in card["metrics"]
    splits = pd.read_csv(os.path.join(out, "splits.csv"))
    assert splits.groupby("group")["split"].nunique().max() == 1
    from landslide.data import manifest as manifest_lib

    again = manifest_lib.load(os.path.join(out, "splits.csv")).frame  # a manifest `evaluate --split` reads
    assert list(again["uri"]) == list(splits["uri"]) and list(again["split"]) == list(splits["split"])


def test_resume_after_interruption(synth_manifest, tmp_path):
    """A run killed after epoch 1 resumes at epoch 2 and ends like an uninterrupted run."""
    out = str(tmp_path / "r")
    cfg = parse_config(tiny_config(synth_manifest, out, train={"epochs": 3}))

    class Stop(Exception):
        pass

    from landslide.training import engine

    original = engine.Trainer.train_epoch
    calls = {"n": 0}

    def dying(self, loader, epoch):
        calls["n"] += 1
        if epoch == 1:
            raise Stop()
        return original(self, loader, epoch)

    engine.Trainer.train_epoch = dying
    try:
        with pytest.raises(Stop):
            run_training(cfg)
    finally:
        engine.Trainer.train_epoch = original
    state = json.load(open(os.path.join(out, "train_state", "state.json")))
    assert state["epoch"] == 0
    summary = run_training(cfg)
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_run"] == 3
    reference = run_training(parse_config(tiny_config(synth_manifest, str(tmp_path / "ref"), train={"epochs": 3})))
    a, _ = load_checkpoint(summary["model_dir"])
    b, _ = load_checkpoint(reference["model_dir"])
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
    # a finished run re-run with the same config does not train again
    again = run_training(cfg)
    assert again["resumed_from_epoch"] == 3
    # the same folder with another model is refused, not silently mixed
    other = parse_config(tiny_config(synth_manifest, out, model={"freeze": {"strategy": "head"}}))
    from landslide.errors import CheckpointError
    with pytest.raises(CheckpointError, match="different model or freezing"):
        run_training(other)


def test_weight_transfer_init_from(trained_run, synth_manifest, tmp_path):
    stage1 = trained_run["model_dir"]
    cfg = parse_config(tiny_config(synth_manifest, str(tmp_path / "s2"),
                                   model={"freeze": {"strategy": "last_blocks", "n": 2}},
                                   train={"epochs": 1, "init_from": stage1}))
    summary = run_training(cfg)
    card = json.load(open(os.path.join(summary["model_dir"], "model_card.json")))
    assert card["init_from"] == stage1 and card["freezing"]["strategy"] == "last_blocks"
    assert summary["trainable_params"] < summary["total_params"]
    bad = tiny_config(synth_manifest, str(tmp_path / "s3"), model={"backbone": "lite0"},
                      train={"init_from": stage1})
    with pytest.raises(ConfigError, match="holds a 'baseline_cnn' model"):
        run_training(parse_config(bad))


def test_bad_images_are_skipped_and_recorded(synth_manifest, tmp_path):
    frame = pd.read_csv(synth_manifest)
    base = os.path.dirname(synth_manifest)
    # corrupt two training images in a copy of the data set
    import shutil
    data = tmp_path / "data"
    shutil.copytree(base, data)
    victims = frame["path"].iloc[:2].tolist()
    (data / victims[0]).write_bytes(b"not a jpeg")
    raw = (data / victims[1]).read_bytes()
    (data / victims[1]).write_bytes(raw[: len(raw) // 3])
    cfg = parse_config(tiny_config(str(data / "manifest.csv"), str(tmp_path / "out"),
                                   data={"split": {"method": "random", "val_fraction": 0.25,
                                                   "test_fraction": 0.25}}))
    summary = run_training(cfg)
    skipped = json.load(open(tmp_path / "out" / "skipped_images.json"))
    reasons = {os.path.basename(s["uri"]): s["reason"] for s in skipped["during_training"]}
    assert os.path.basename(victims[0]) in reasons or summary["splits"]["train"]["samples"] < 24
    assert all("corrupt" in r or "recognised" in r for r in reasons.values())
    assert summary["epochs_run"] == 2


def test_empty_class_is_clear_error(synth_manifest, tmp_path):
    frame = pd.read_csv(synth_manifest)
    only = frame[frame["label"] == "landslide"]
    path = os.path.join(os.path.dirname(synth_manifest), "only_pos.csv")
    only.to_csv(path, index=False)
    cfg = parse_config(tiny_config(path, str(tmp_path / "o"), data={"split": {"method": "random"}}))
    with pytest.raises(DataError, match="training split has no non_landslide images"):
        run_training(cfg)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"train.epochs: Input should be greater than 0"):
        parse_config(tiny_config("m.csv", "o", train={"epochs": 0}))
    with pytest.raises(ConfigError, match=r"model.backbone: .*unknown backbone 'resnet5'"):
        parse_config(tiny_config("m.csv", "o", model={"backbone": "resnet5"}))
    with pytest.raises(ConfigError, match=r"train.epocs: Extra inputs are not permitted"):
        parse_config(tiny_config("m.csv", "o", train={"epocs": 3}))
    with pytest.raises(ConfigError, match=r"model.freeze: .*needs n >= 1"):
        parse_config(tiny_config("m.csv", "o", model={"freeze": {"strategy": "last_layers"}}))
    from landslide.config import load_config
    with pytest.raises(ConfigError, match="config file .*not found"):
        load_config(str(tmp_path / "absent.yaml"))
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
