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
