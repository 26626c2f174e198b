"""Experiments (compare / finetune / transfer / data_size): planning, resuming, comparison tables, plots."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from conftest import tiny_config

from landslide.config import parse_config
from landslide.data.manifest import load as load_manifest
from landslide.data.splits import assign_splits, limit_training
from landslide.errors import ConfigError, LandslideError
from landslide.experiments.plan import plan
from landslide.experiments.runner import run_experiment
from landslide.training.run import run_training


def _cfg(manifest, out, **experiment):
    return parse_config(tiny_config(manifest, str(out), experiment=experiment))


def test_plan_compare_finetune_transfer_data_size(synth_manifest, tmp_path):
    v = plan(_cfg(synth_manifest, tmp_path, kind="compare", backbones=["baseline", "lite0"],
                  model_overrides={"lite0": {"dropout": 0.3}}))
    assert [x.name for x in v] == ["baseline_cnn", "tf_efficientnet_lite0"]
    assert v[1].cfg.model.dropout == 0.3 and v[0].cfg.model.dropout == 0.2
    assert v[0].cfg.output_dir == str(tmp_path / "variants" / "baseline_cnn")
    assert v[0].cfg.experiment.kind == "single" and v[0].cfg.train.epochs == v[1].cfg.train.epochs

    v = plan(_cfg(synth_manifest, tmp_path, kind="finetune",
                  freeze=[{"strategy": "head"}, {"strategy": "last_blocks", "n": [1, 2]},
                          {"strategy": "last_layers", "n": [3]}]))
    assert [x.name for x in v] == ["head", "last_blocks-1", "last_blocks-2", "last_layers-3"]
    assert v[2].cfg.model.freeze.n == 2 and v[3].cfg.model.freeze.strategy == "last_layers"

    v = plan(_cfg(synth_manifest, tmp_path, kind="transfer", stages=[
        {"name": "stage1", "set": {"model.freeze.strategy": "head"}},
        {"name": "stage2", "set": {"model.freeze.strategy": "last_blocks", "model.freeze.n": 3}}]))
    assert v[0].cfg.train.init_from is None
    assert v[1].cfg.train.init_from == os.path.join(v[0].cfg.output_dir, "model") and v[1].depends_on == "stage1"

    v = plan(_cfg(synth_manifest, tmp_path, kind="data_size", fractions=[0.5, 1.0],
                  subsets=[{"name": "two blocks", "filter": {"group": ["blk_0_0", "blk_1_1"]}}]))
    assert [x.name for x in v] == ["fraction-0.5", "fraction-1", "two-blocks"]
    assert v[2].cfg.data.train_filter == {"group": ["blk_0_0", "blk_1_1"]}

    v = plan(_cfg(synth_manifest, tmp_path, kind="variants", variants=[
        {"name": "small", "set": {"model.image_size": 32}}, {"name": "large input", "set": {"model.image_size": 64,
                                                                                          "train.lr": 0.01}}]))
    assert [x.name for x in v] == ["small", "large-input"] and v[1].cfg.model.image_size == 64
    assert v[1].cfg.train.lr == 0.01 and v[1].params == {"model.image_size": 64, "train.lr": 0.01}
    with pytest.raises(ConfigError, match="variant names repeat"):
        _cfg(synth_manifest, tmp_path, kind="variants", variants=[{"name": "a"}, {"name": "a"}])


def test_experiment_config_errors_name_the_field(synth_manifest, tmp_path):
    with pytest.raises(ConfigError, match="experiment.*backbones"):
        _cfg(synth_manifest, tmp_path, kind="compare")
    with pytest.raises(ConfigError, match="unknown backbone|not_a_net"):
        _cfg(synth_manifest, tmp_path, kind="compare", backbones=["not_a_net"])
    with pytest.raises(ConfigError, match="experiment.stages: List should have at least 2 items"):
        _cfg(synth_manifest, tmp_path, kind="transfer", stages=[{"name": "only"}])
    # each kind takes only its own fields, and the message names the kind
    with pytest.raises(ConfigError, match=r"experiment.backbones: Extra inputs .*\(experiment kind 'finetune'\)"):
        _cfg(synth_manifest, tmp_path, kind="finetune", freeze=[{"strategy": "head"}], backbones=["baseline"])
    with pytest.raises(ConfigError, match="experiment: unknown experiment kind: choose single, compare"):
        _cfg(synth_manifest, tmp_path, kind="comparison")
    with pytest.raises(ConfigError, match="experiment.parts.0: unknown experiment kind.*cannot be studies"):
        _cfg(synth_manifest, tmp_path, kind="study", parts=[{"name": "inner", "kind": "study", "parts": []}])
    with pytest.raises(ConfigError, match="model_overrides"):
        plan(_cfg(synth_manifest, tmp_path, kind="compare", backbones=["baseline"],
                  model_overrides={"resnet50": {"dropout": 0.1}}))


def test_limit_training_is_nested_stratified_and_leaves_val_test(synth_manifest):
    data = assign_splits(load_manifest(synth_manifest), "group", 0.25, 0.25, 0)
    train_rows = set(data.frame.index[data.frame["split"] == "train"])
    half = limit_training(data, 0.5, seed=3).frame
    small = limit_training(data, 0.25, seed=3).frame
    for frame in (half, small):
        held = frame["split"].isin(["val", "test"])
        assert (frame.loc[held, "split"] == data.frame.loc[held, "split"]).all()
        kept = frame[frame["split"] == "train"]
        assert set(kept["target"]) == {0, 1}
    assert set(small.index[small["split"] == "train"]) <= set(half.index[half["split"] == "train"]) <= train_rows
    groups = limit_training(data, keep={"group": ["blk_0_0", "blk_1_1"]}).frame
    assert set(groups.loc[groups["split"] == "train", "group"]) == {"blk_0_0", "blk_1_1"}
    with pytest.raises(LandslideError, match="keeps no training rows"):
        limit_training(data, keep={"group": ["nowhere"]})
    with pytest.raises(LandslideError, match="no column 'scene'"):
        limit_training(data, keep={"scene": ["A"]})


def test_failed_variant_is_recorded_and_finished_ones_are_kept(synth_manifest, tmp_path):
    calls = []

    def runner(cfg):
        calls.append(cfg.name)
        if "lite0" in cfg.name:
            raise ConfigError("lite0 weights unavailable here")
        return run_training(cfg)

    cfg = _cfg(synth_manifest, tmp_path / "exp", kind="compare", backbones=["baseline", "lite0"])
    lines = []
    summary = run_experiment(cfg, runner, lines.append)
    assert summary["failed"] == ["tf_efficientnet_lite0"] and len(calls) == 2
    table = pd.read_csv(tmp_path / "exp" / "comparison.csv")
    ok = table[table["variant"] == "baseline_cnn"].iloc[0]
    assert ok["status"] == "ok" and ok["total_params"] > 2_000_000 and ok["depth"] >= 6
    assert 0 <= ok["test_f1"] <= 1 and ok["size_mb"] > 5
    md = (tmp_path / "exp" / "comparison.md").read_text()
    assert "baseline_cnn" in md and "failed: lite0 weights unavailable here" in md
    assert (tmp_path / "exp" / "comparison.png").stat().st_size > 1000
    before = (tmp_path / "exp" / "variants" / "baseline_cnn" / "summary.json").stat().st_mtime_ns
    run_experiment(cfg, runner, lines.append)  # resubmitted: the finished variant is not re-run
    assert calls == ["tiny-baseline_cnn", "tiny-tf_efficientnet_lite0", "tiny-tf_efficientnet_lite0"]
    assert (tmp_path / "exp" / "variants" / "baseline_cnn" / "summary.json").stat().st_mtime_ns == before
    assert any("already finished" in line for line in lines)


def test_data_size_and_transfer_experiments_run_end_to_end(synth_manifest, tmp_path):
    cfg = _cfg(synth_manifest, tmp_path / "ds", kind="data_size", fractions=[0.5, 1.0])
    summary = run_experiment(cfg, run_training, lambda _: None)
    assert not summary["failed"]
    table = pd.read_csv(tmp_path / "ds" / "comparison.csv").set_index("variant")
    assert table.loc["fraction-0.5", "train_images"] < table.loc["fraction-1", "train_images"]
    assert table["test_images"].nunique() == 1  # same test split for every variant
    assert (tmp_path / "ds" / "learning_curve.png").exists()

    cfg = _cfg(synth_manifest, tmp_path / "tr", kind="transfer", stages=[
        {"name": "s1", "set": {"model.freeze.strategy": "head"}},
        {"name": "s2", "set": {"model.freeze.strategy": "last_blocks", "model.freeze.n": 2}}])
    summary = run_experiment(cfg, run_training, lambda _: None)
    assert not summary["failed"]
    card = json.load(open(tmp_path / "tr" / "variants" / "s2" / "model" / "model_card.json"))
    assert card["init_from"].endswith(os.path.join("s1", "model"))
    rows = {r["variant"]: r for r in summary["rows"]}
    assert rows["s2"]["trainable_params"] > rows["s1"]["trainable_params"]


def test_every_experiment_kind_has_one_config_class_and_one_planner():
    from typing import get_args

    from landslide.config import EXPERIMENT_KINDS
    from landslide.experiments.plan import PLANNERS

    assert set(PLANNERS) == set(EXPERIMENT_KINDS)
    for kind, cls in EXPERIMENT_KINDS.items():
        assert get_args(cls.model_fields["kind"].annotation) == (kind,)


def _two_regions(manifest: str) -> str:
    """The synthetic chips as two regions (by group), each with a fixed train/val/test split of both classes."""
    frame = pd.read_csv(manifest)
    groups = sorted(frame["group"].unique())
    frame["region"] = frame["group"].map({g: ("north" if i % 2 == 0 else "south") for i, g in enumerate(groups)})
    frame["split"] = "train"
    for _, part in frame.groupby(["region", "label"]):
        frame.loc[part.index[:1], "split"] = "test"
        frame.loc[part.index[1:2], "split"] = "val"
    path = os.path.join(os.path.dirname(manifest), "two_regions.csv")
    frame.to_csv(path, index=False)
    return path


def test_region_matrix_trains_on_each_region_and_tests_on_all(synth_manifest, tmp_path):
    data = _two_regions(synth_manifest)
    frame = pd.read_csv(data)
    cfg = parse_config(tiny_config(data, str(tmp_path / "rx"), data={"train": data, "split": {"method": "predefined"}},
                                   experiment={"kind": "regions", "regions": ["north", "south"]}))
    variants = plan(cfg)
    # with two regions "all but north" is "only south": planned once
    assert [v.name for v in variants] == ["only-north", "only-south", "all"]
    assert variants[0].cfg.data.train_regions == ["north"] and variants[2].cfg.data.train_regions == ["north", "south"]

    summary = run_experiment(cfg, run_training, lambda _: None)
    assert not summary["failed"] and "region_matrix" in summary["files"]
    # trained and validated on north only: south's train and val chips unused, every test chip kept
    splits = pd.read_csv(tmp_path / "rx" / "variants" / "only-north" / "splits.csv")  # a manifest: region kept
    assert sorted(splits["path"]) == sorted(os.path.join(os.path.dirname(data), p) for p in frame["path"])
    south = splits[splits["region"] == "south"]
    assert set(south["split"]) == {"unused", "test"} and (splits["split"] == "test").sum() == 4
    run = json.load(open(tmp_path / "rx" / "variants" / "only-north" / "summary.json"))
    assert run["splits"]["val"]["samples"] == 2 and set(run["test_by_region"]) == {"north", "south"}

    cells = pd.read_csv(tmp_path / "rx" / "region_matrix.csv")
    assert len(cells) == 6 and set(cells["test_region"]) == {"north", "south"}
    seen = {(r.train_set, r.test_region): r.seen for r in cells.itertuples()}
    assert seen == {("only-north", "north"): True, ("only-north", "south"): False,
                    ("only-south", "north"): False, ("only-south", "south"): True,
                    ("all", "north"): True, ("all", "south"): True}
    assert (cells["n"] == 2).all() and (cells["landslide"] == 1).all()
    text = open(tmp_path / "rx" / "region_matrix.md").read()
    assert "## F1" in text and "## MCC" in text and "| only-north (north) |" in text and "**" in text

    with pytest.raises(LandslideError, match=r"data.train_regions: \['west'\] not in the data's regions"):
        run_training(parse_config(tiny_config(data, str(tmp_path / "w"),
                                              data={"train": data, "train_regions": ["west"]})))
    with pytest.raises(LandslideError, match="has no 'region' column"):
        run_training(parse_config(tiny_config(synth_manifest, str(tmp_path / "n"),
                                              data={"train_regions": ["north"]})))
    with pytest.raises(ConfigError, match=r"experiment.regions: Value error, values repeat: \[.north., .north.\]"):
        _cfg(data, tmp_path, kind="regions", regions=["north", "north"])
