"""Train/val/test splits that do not leak.

Methods: ``predefined`` (the manifest's ``split`` column), ``random``, ``stratified``, ``group`` (whole
``group`` values go to one split) and ``spatial`` (groups are square blocks of ``block_size_m`` metres from
lat/lon, optionally with a ``buffer_m`` band of training chips dropped around every held-out chip, so no
training chip touches a test chip across a block edge). Grouped methods try many seeded group orders and
keep the one whose split sizes and class ratios come closest to the targets.

Cross-validation (``folds`` = k): the units (groups for ``group``/``spatial``, single chips for ``random``/
``stratified``) are dealt into k folds of near-equal size and class ratio; fold ``fold`` is the test split and
validation groups are drawn from the other folds. Over the k folds every chip is tested exactly once, and the
fold assignment depends only on the seed, so the k runs of one experiment share it.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.spatial import cKDTree

from landslide.data.manifest import Manifest
from landslide.errors import ConfigError, DataError
from landslide.lonlat import SPLIT_GRID_RADIUS_M as EARTH_RADIUS_M

SPLITS = ("train", "val", "test")
METHODS = ("predefined", "random", "stratified", "group", "spatial")
log = logging.getLogger(__name__)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(f"split fractions val={val_fraction}, test={test_fraction}: each must be in [0, 1) "
                          "and together below 1")


def _random(targets: np.ndarray, val_f: float, test_f: float, rng: np.random.Generator,
            stratify: bool) -> np.ndarray:
    out = np.empty(len(targets), dtype=object)
    pools = [np.flatnonzero(targets == c) for c in np.unique(targets)] if stratify else [np.arange(len(targets))]
    for idx in pools:
        idx = rng.permutation(idx)
        n_test = int(round(len(idx) * test_f))
        n_val = int(round(len(idx) * val_f))
        out[idx[:n_test]] = "test"
        out[idx[n_test:n_test + n_val]] = "val"
        out[idx[n_test + n_val:]] = "train"
    return out


def _grouped(groups: np.ndarray, targets: np.ndarray, val_f: float, test_f: float, seed: int,
             tries: int = 200) -> np.ndarray:
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < 3 and (val_f > 0 and test_f > 0):
        raise DataError(f"grouped split needs at least 3 groups for train/val/test, found {len(uniq)}")
    sizes = np.bincount(inverse)
    positives = np.bincount(inverse, weights=targets)
    n, pos_rate = len(targets), targets.mean()
    goals = {"test": test_f * n, "val": val_f * n}
    best, best_cost = None, math.inf
    for attempt in range(tries):
        order = np.random.default_rng(seed + attempt).permutation(len(uniq))
        assign = np.full(len(uniq), "train", dtype=object)
        filled = {"test": 0.0, "val": 0.0}
        for g in order:
            for name in ("test", "val"):
                if goals[name] > 0 and filled[name] < goals[name] and filled[name] + sizes[g] / 2 <= goals[name]:
                    assign[g] = name
                    filled[name] += sizes[g]
                    break
        cost = 0.0
        for name in SPLITS:
            sel = assign == name
            count, pos = sizes[sel].sum(), positives[sel].sum()
            goal = goals.get(name, n - goals["test"] - goals["val"])
            if goal > 0 and count == 0:
                cost += 1e6
                continue
            cost += abs(count - goal) / n
            if count:
                cost += abs(pos / count - pos_rate)
                if 0 < pos_rate < 1 and (pos == 0 or pos == count):
                    cost += 10.0  # a split without one of the classes cannot be evaluated
        if cost < best_cost:
            best, best_cost = assign, cost
    return best[inverse]


def kfold_assignment(units: np.ndarray, targets: np.ndarray, folds: int, seed: int, tries: int = 200) -> np.ndarray:
    """Fold index (0..folds-1) per row; whole units stay together. Greedy largest-first dealing in many seeded
    orders, keeping the one whose fold sizes and class ratios are most even."""
    uniq, inverse = np.unique(units, return_inverse=True)
    if len(uniq) < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} groups, found {len(uniq)}")
    sizes = np.bincount(inverse).astype(float)
    positives = np.bincount(inverse, weights=targets)
    n, pos_rate = len(targets), float(targets.mean())
    best, best_cost = None, math.inf
    for attempt in range(tries):
        rng = np.random.default_rng(seed + attempt)
        # largest units first (ties and near-ties shuffled by the seed), each to the emptiest fold
        order = np.lexsort((rng.random(len(uniq)), -sizes * rng.uniform(0.8, 1.2, len(uniq))))
        fill, pos = np.zeros(folds), np.zeros(folds)
        assign = np.empty(len(uniq), dtype=int)
        for g in order:
            # the emptiest fold, counting as extra fill the class imbalance this unit would leave there
            need = pos_rate * (fill + sizes[g]) - (pos + positives[g])
            k = int(np.argmin(fill + np.abs(need)))
            assign[g] = k
            fill[k] += sizes[g]
            pos[k] += positives[g]
        cost = np.abs(fill - n / folds).sum() / n + np.abs(pos / np.maximum(fill, 1) - pos_rate).sum()
        if 0 < pos_rate < 1:
            cost += 10.0 * int(((pos == 0) | (pos == fill)).sum())
        if cost < best_cost:
            best, best_cost = assign, cost
    return best[inverse]


def _fold_split(units: np.ndarray, targets: np.ndarray, folds: int, fold: int, val_f: float,
                seed: int) -> np.ndarray:
    if not 0 <= fold < folds:
        raise ConfigError(f"split.fold={fold}: must be in 0..{folds - 1} for split.folds={folds}")
    assign = kfold_assignment(units, targets, folds, seed)
    split = np.where(assign == fold, "test", "train").astype(object)
    rest = np.flatnonzero(assign != fold)
    if val_f > 0:
        # val_fraction is of the whole data set; draw it from the training folds' groups
        inner = _grouped(units[rest], targets[rest], min(val_f * len(targets) / len(rest), 0.9), 0.0, seed)
        split[rest[inner == "val"]] = "val"
    return split


def spatial_blocks(lat: np.ndarray, lon: np.ndarray, block_size_m: float) -> np.ndarray:
    """Block ids of ``block_size_m`` squares on an equal-area-ish grid (latitude rows, scaled longitude)."""
    if block_size_m <= 0:
        raise ConfigError(f"split.block_size_m={block_size_m}: must be positive")
    dlat = block_size_m / (EARTH_RADIUS_M * math.pi / 180)
    rows = np.floor(lat / dlat).astype(int)
    # longitude blocks shrink with latitude; use each row's centre latitude for the width
    widths = dlat / np.maximum(np.cos(np.radians((rows + 0.5) * dlat)), 1e-6)
    cols = np.floor(lon / widths).astype(int)
    return np.array([f"blk_{r}_{c}" for r, c in zip(rows, cols)], dtype=object)


def sphere_xyz(lat: np.ndarray, lon: np.ndarray, radius: float = EARTH_RADIUS_M) -> np.ndarray:
    """Cartesian points on a sphere (metres by default), for KD-tree distance queries on lon/lat."""
    la, lo = np.radians(lat), np.radians(lon)
    return radius * np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def apply_buffer(split: np.ndarray, lat: np.ndarray, lon: np.ndarray, buffer_m: float) -> np.ndarray:
    """Mark training chips within ``buffer_m`` of any val/test chip as ``excluded``."""
    held = np.flatnonzero(split != "train")
    train = np.flatnonzero(split == "train")
    if buffer_m <= 0 or len(held) == 0 or len(train) == 0:
        return split
    tree = cKDTree(sphere_xyz(lat[held], lon[held]))
    dist, _ = tree.query(sphere_xyz(lat[train], lon[train]), k=1, distance_upper_bound=buffer_m)
    out = split.copy()
    out[train[np.isfinite(dist)]] = "excluded"
    return out


def assign_splits(manifest: Manifest, method: str = "group", val_fraction: float = 0.15,
                  test_fraction: float = 0.15, seed: int = 0, block_size_m: float = 1000.0,
                  buffer_m: float = 0.0, folds: int | None = None, fold: int = 0) -> Manifest:
    """Return a copy of ``manifest`` with a ``split`` column (train/val/test, or ``excluded`` in buffers).
    With ``folds``, fold ``fold`` of a k-fold partition is the test split (``test_fraction`` is unused)."""
    if method not in METHODS:
        raise ConfigError(f"split.method={method!r}: choose one of {list(METHODS)}")
    if folds is not None and method == "predefined":
        raise ConfigError("split.folds: cross-validation needs method group, spatial, stratified or random, not "
                          "predefined")
    if folds is not None and folds < 2:
        raise ConfigError(f"split.folds={folds}: cross-validation needs at least 2 folds")
    _check_fractions(val_fraction, 1 / folds if folds else test_fraction)
    frame = manifest.frame.copy()
    if len(frame) == 0:
        raise DataError(f"{manifest.source}: no labelled samples to split")
    targets = frame["target"].to_numpy()
    if method == "predefined":
        if "split" not in frame.columns or frame["split"].isna().any():
            raise ConfigError(f"split.method='predefined' but {manifest.source} has no complete 'split' column")
        split = frame["split"].to_numpy(dtype=object)
    elif folds is not None and method in ("random", "stratified"):
        # single chips as units; the dealing balances class ratios for both (random differs only in its name)
        split = _fold_split(np.arange(len(frame)), targets, folds, fold, val_fraction, seed)
    elif method in ("random", "stratified"):
        split = _random(targets, val_fraction, test_fraction, np.random.default_rng(seed), method == "stratified")
    else:
        if method == "group":
            if "group" not in frame.columns:
                raise ConfigError(f"split.method='group' but {manifest.source} has no 'group' column")
            groups = frame["group"].astype(str).to_numpy()
        else:
            if not {"lat", "lon"} <= set(frame.columns) or frame[["lat", "lon"]].isna().any().any():
                raise ConfigError(f"split.method='spatial' needs 'lat' and 'lon' on every row of {manifest.source}")
            groups = spatial_blocks(frame["lat"].to_numpy(), frame["lon"].to_numpy(), block_size_m)
            frame["group"] = groups
        if folds is not None:
            split = _fold_split(groups, targets, folds, fold, val_fraction, seed)
        else:
            split = _grouped(groups, targets, val_fraction, test_fraction, seed)
        if buffer_m > 0:
            if not {"lat", "lon"} <= set(frame.columns):
                raise ConfigError("split.buffer_m needs 'lat' and 'lon' columns")
            split = apply_buffer(split, frame["lat"].to_numpy(), frame["lon"].to_numpy(), buffer_m)
    frame["split"] = split
    out = Manifest(frame, manifest.source, manifest.skipped, manifest.skipped_examples)
    if method in ("group", "spatial"):
        check_no_group_leakage(out)
    elif "group" in frame.columns and frame.groupby("group")["split"].nunique().max() > 1:
        log.warning("split.method=%r puts chips of one group into several splits; neighbouring chips leak "
                    "between train and test. Use method 'group' or 'spatial' for honest estimates.", method)
    return out


def check_no_group_leakage(manifest: Manifest) -> None:
    """Raise if any group has chips in more than one of train/val/test."""
    frame = manifest.frame[manifest.frame["split"].isin(SPLITS)]
    per_group = frame.groupby("group")["split"].nunique()
    leaking = per_group[per_group > 1]
    if len(leaking):
        raise DataError(f"group leakage: groups {list(leaking.index[:5])} appear in several splits")


def split_summary(manifest: Manifest) -> dict:
    """Counts per split and class, for reports."""
    frame = manifest.frame
    out = {}
    for name, part in frame.groupby("split"):
        out[str(name)] = {"samples": int(len(part)), "landslide": int((part["target"] == 1).sum()),
                          "non_landslide": int((part["target"] == 0).sum())}
        if "group" in part:
            out[str(name)]["groups"] = int(part["group"].nunique())
    return out


def get_split(manifest: Manifest, name: str) -> Manifest:
    """Rows of one split."""
    return manifest.subset(manifest.frame["split"] == name)


def limit_training(manifest: Manifest, fraction: float = 1.0, keep: dict[str, list] | None = None,
                   seed: int = 0) -> Manifest:
    """Mark training rows outside a subset as ``unused``; validation and test rows are untouched.

    ``keep`` filters training rows by column values; ``fraction`` then keeps a class-stratified share of what
    is left. Each class is ordered by one seeded permutation, so with the same seed a smaller fraction is
    always a subset of a larger one (learning curves compare nested training sets).
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"data.train_fraction={fraction}: must be in (0, 1]")
    frame = manifest.frame
    split = frame["split"].to_numpy(dtype=object).copy()
    train = split == "train"
    for column, values in (keep or {}).items():
        if column not in frame.columns:
            raise ConfigError(f"data.train_filter: {manifest.source} has no column {column!r} "
                              f"(columns: {sorted(frame.columns)})")
        wanted = {str(v) for v in values}
        match = frame[column].astype(str).isin(wanted).to_numpy()
        if not (match & train).any():
            raise DataError(f"data.train_filter {column}={sorted(wanted)} keeps no training rows of "
                            f"{manifest.source}")
        split[train & ~match] = "unused"
        train &= match
    if fraction < 1:
        rng = np.random.default_rng(seed)
        targets = frame["target"].to_numpy()
        for c in np.unique(targets):
            # permute the whole class, then filter: the order of a row never depends on the filter
            order = rng.permutation(np.flatnonzero(targets == c))
            idx = order[train[order]]
            n_keep = max(1, math.ceil(fraction * len(idx))) if len(idx) else 0
            split[idx[n_keep:]] = "unused"
    out = manifest.subset(slice(None))
    out.frame["split"] = split
    return out


def restrict_regions(manifest: Manifest, regions: list[str]) -> Manifest:
    """Train *and validate* only on chips of ``regions`` (the ``region`` column); training and validation rows
    of other regions are marked ``unused``, the test split keeps every region. With validation (and so the
    threshold) drawn from the training regions only, the test metrics of another region measure how the model
    does where it has seen no labels at all: the cross-region setting. ConfigError: no ``region`` column, or a
    region the data does not have; DataError: no training or validation rows left."""
    frame = manifest.frame
    if "region" not in frame.columns:
        raise ConfigError(f"data.train_regions: {manifest.source} has no 'region' column (add one, or combine "
                          "manifests with `landslide data merge --region ...`)")
    known = sorted(str(r) for r in frame["region"].dropna().unique())
    unknown = sorted(set(regions) - set(known))
    if unknown:
        raise ConfigError(f"data.train_regions: {unknown} not in the data's regions {known}")
    split = frame["split"].to_numpy(dtype=object).copy()
    inside = frame["region"].isin(regions).to_numpy()
    fitted = np.isin(split, ["train", "val"])
    split[fitted & ~inside] = "unused"
    for name in ("train", "val"):
        left = split == name
        if not left.any():
            raise DataError(f"data.train_regions {regions}: no {name} rows left in {manifest.source}")
    out = manifest.subset(slice(None))
    out.frame["split"] = split
    return out
