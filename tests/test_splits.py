"""Splits that do not leak."""

import numpy as np
import pandas as pd
import pytest

from landslide.data.manifest import Manifest
from landslide.data.splits import assign_splits, check_no_group_leakage, spatial_blocks, split_summary
from landslide.errors import ConfigError, DataError


def _manifest(n=400, seed=0, groups=40):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"uri": [f"c{i}.png" for i in range(n)], "path": [f"c{i}.png" for i in range(n)],
                          "label": "x", "target": rng.integers(0, 2, n),
                          "group": [f"g{i % groups}" for i in range(n)],
                          "lat": 30 + rng.random(n) * 0.05, "lon": 100 + rng.random(n) * 0.05})
    return Manifest(frame, "mem")


@pytest.mark.parametrize("method", ["random", "stratified", "group", "spatial"])
def test_split_sizes_and_classes(method):
    m = assign_splits(_manifest(), method, 0.2, 0.2, seed=3, block_size_m=800)
    counts = m.frame["split"].value_counts(normalize=True)
    assert abs(counts["test"] - 0.2) < 0.08 and abs(counts["val"] - 0.2) < 0.08
    for name in ("train", "val", "test"):
        assert m.frame.loc[m.frame["split"] == name, "target"].nunique() == 2


def test_stratified_keeps_class_ratio():
    m = assign_splits(_manifest(), "stratified", 0.2, 0.2, seed=0)
    rates = m.frame.groupby("split")["target"].mean()
    assert rates.max() - rates.min() < 0.05


def test_group_split_never_leaks():
    m = assign_splits(_manifest(), "group", 0.15, 0.15, seed=1)
    assert m.frame.groupby("group")["split"].nunique().max() == 1
    check_no_group_leakage(m)


def test_spatial_blocks_and_buffer():
    m = assign_splits(_manifest(), "spatial", 0.2, 0.2, seed=0, block_size_m=1000, buffer_m=150)
    f = m.frame
    kept = f[f["split"] != "excluded"]
    assert kept.groupby("group")["split"].nunique().max() == 1
    assert (f["split"] == "excluded").any()
    # no remaining training chip lies within the buffer of a held-out chip
    from landslide.data.splits import sphere_xyz
    held = sphere_xyz(f.loc[f["split"].isin(["val", "test"]), "lat"].to_numpy(),
                f.loc[f["split"].isin(["val", "test"]), "lon"].to_numpy())
    train = sphere_xyz(f.loc[f["split"] == "train", "lat"].to_numpy(), f.loc[f["split"] == "train", "lon"].to_numpy())
    d = np.sqrt(((train[:, None] - held[None]) ** 2).sum(-1)).min()
    assert d > 150


def test_block_ids_are_metric():
    lat = np.array([0.0, 0.0089, 60.0, 60.0])
    lon = np.array([0.0, 0.0, 0.0, 0.017])
    ids = spatial_blocks(lat, lon, 1000)
    assert ids[0] == ids[1]  # ~990 m apart in latitude, same 1-km row
    assert ids[2] == ids[3]  # 0.017° of longitude at 60°N is ~945 m


def test_predefined_and_errors():
    m = _manifest(20)
    m.frame["split"] = ["train"] * 10 + ["val"] * 5 + ["test"] * 5
    out = assign_splits(m, "predefined")
    assert split_summary(out)["val"]["samples"] == 5
    with pytest.raises(ConfigError, match="choose one of"):
        assign_splits(_manifest(), "kfold")
    with pytest.raises(ConfigError, match="fractions"):
        assign_splits(_manifest(), "random", 0.6, 0.6)
    no_group = _manifest()
    no_group.frame = no_group.frame.drop(columns=["group"])
    with pytest.raises(ConfigError, match="no 'group' column"):
        assign_splits(no_group, "group")
    with pytest.raises(DataError, match="at least 3 groups"):
        assign_splits(_manifest(groups=2), "group")


@pytest.mark.parametrize("method", ["group", "spatial", "stratified"])
def test_kfold_tests_every_chip_once_without_group_leakage(method):
    base = _manifest(n=300, groups=30)
    tested = pd.Series(0, index=base.frame["uri"])
    for fold in range(4):
        m = assign_splits(base, method, 0.15, 0.0, seed=2, block_size_m=800, folds=4, fold=fold)
        frame = m.frame
        counts = frame["split"].value_counts(normalize=True)
        assert abs(counts["test"] - 0.25) < 0.05 and abs(counts["val"] - 0.15) < 0.05
        for name in ("train", "val", "test"):
            assert frame.loc[frame["split"] == name, "target"].nunique() == 2
        if method != "stratified":
            check_no_group_leakage(m)
        tested[frame.loc[frame["split"] == "test", "uri"]] += 1
    assert (tested == 1).all()  # out-of-fold: each chip in exactly one test fold


def test_kfold_rejects_bad_settings():
    with pytest.raises(ConfigError, match="fold=4"):
        assign_splits(_manifest(), "group", 0.1, 0.0, folds=4, fold=4)
    with pytest.raises(ConfigError, match="predefined"):
        assign_splits(_manifest().subset(slice(None)), "predefined", folds=3)
    with pytest.raises(DataError, match="at least 5 groups"):
        assign_splits(_manifest(groups=3), "group", 0.1, 0.0, folds=5)
    from landslide.config import parse_config
    with pytest.raises(ConfigError, match="not a fold"):
        parse_config({"data": {"train": "x.csv", "split": {"folds": 3, "fold": 3}}}, "test")
