"""A check on real UAV chips from ../shared/data (skipped when that folder is absent)."""

import pandas as pd
import pytest

from landslide.config import parse_config
from landslide.data import manifest as manifest_lib
from landslide.data.splits import assign_splits
from landslide.training.run import run_training
from tests.conftest import SHARED_DATA

BAIGE = SHARED_DATA / "baige_uav" / "labels.csv"
pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not BAIGE.exists(), reason=f"real data not present at {BAIGE}")]


def test_real_manifest_labels_and_grouped_split():
    m = manifest_lib.load(str(BAIGE))
    assert m.class_counts() == {"landslide": 208, "non_landslide": 267}
    assert m.skipped == {"label:ambiguous": 35}
    s = assign_splits(m, "group", 0.15, 0.15, seed=0)
    assert s.frame.groupby("group")["split"].nunique().max() == 1
    for name in ("train", "val", "test"):
        assert s.frame.loc[s.frame["split"] == name, "target"].nunique() == 2


def test_real_chips_train_and_evaluate(tmp_path):
    frame = pd.read_csv(BAIGE)
    groups = sorted(frame["group"].unique())[::4]  # a spatially coherent subset, for speed
    small = frame[frame["group"].isin(groups)].copy()
    small["path"] = [str(BAIGE.parent / p) for p in small["path"]]
    path = tmp_path / "subset.csv"
    small.to_csv(path, index=False)
    cfg = parse_config({
        "name": "real-smoke", "output_dir": str(tmp_path / "run"),
        "data": {"train": str(path), "split": {"method": "group", "val_fraction": 0.25, "test_fraction": 0.25}},
        "model": {"backbone": "tf_efficientnet_lite0", "pretrained": "offline", "image_size": 128,
                  "freeze": {"strategy": "head"}},
        "train": {"epochs": 2, "batch_size": 16, "progress": False},
        "eval": {"bootstrap": 100, "cam_max_images": 8, "gallery_size": 2}})
    summary = run_training(cfg)
    assert summary["test_metrics"]["roc_auc"] is None or summary["test_metrics"]["roc_auc"] > 0.5


def test_real_labels_follow_the_documented_mask_rule(tmp_path):
    """The shipped labels are what `landslide labels` computes from the masks (landslide.data.masks)."""
    from landslide.cli import main

    out = tmp_path / "relabelled.csv"
    assert main(["labels", str(BAIGE), "--out", str(out)]) == 0
    ours, theirs = pd.read_csv(out), pd.read_csv(BAIGE)
    assert (ours["label"] == theirs["label"]).all()
    assert (ours["landslide_fraction"] - theirs["landslide_fraction"]).abs().max() < 1e-3
    assert ours["label"].value_counts().to_dict() == {"non_landslide": 267, "landslide": 208, "ambiguous": 35}


def test_real_group_folds_test_every_chip_once():
    m = manifest_lib.load(str(BAIGE))
    tested = pd.Series(0, index=m.frame["uri"])
    for fold in range(5):
        s = assign_splits(m, "group", 0.2, 0.0, seed=0, folds=5, fold=fold)
        assert s.frame.groupby("group")["split"].nunique().max() == 1
        test = s.frame[s.frame["split"] == "test"]
        assert 85 <= len(test) <= 105 and 0.35 < test["target"].mean() < 0.5
        tested[test["uri"]] += 1
    assert (tested == 1).all()
