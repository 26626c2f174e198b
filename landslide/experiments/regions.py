"""The train x test region matrix of a ``regions`` experiment (:class:`landslide.config.RegionsExperiment`).

Each variant was trained and validated (threshold included) on some regions (``data.train_regions``) and
tested on the held-out test chips of *every* region. A cell is one training set scored on one test region:
metrics of its test predictions there (pooled over folds/seeds when repeated, each run at its own
validation-chosen threshold) with intervals from a bootstrap over spatial groups, so neighbouring chips are
not counted as independent evidence. A cell whose test region was not among the training regions measures
what a user sweeping a new region would get; the others are in-region estimates.

Footprint models (``model.task: segmentation``) get the same matrix of footprint metrics: pixel IoU and F1,
object F1 at IoU 0.5, from the chips' pooled pixel and object counts.

Writes ``region_matrix.csv`` (one row per cell) and ``region_matrix.md`` (F1 and MCC matrices; pixel IoU, pixel
F1 and object F1 for footprint models) in the experiment's folder.
"""

from __future__ import annotations

import pandas as pd

from landslide.config import RunConfig
from landslide.experiments.plan import Variant, task_of
from landslide.experiments.repeats import groups_of_runs, pooled_scores, pooled_table
from landslide.experiments.report import FOOTPRINT_METRICS, write_table

MATRIX_METRICS = ("accuracy", "precision", "recall", "f1", "mcc", "roc_auc")
"""The metrics of a classifier's cells; a footprint model's are :data:`FOOTPRINT_METRICS`."""
_SHOWN = {"classification": (("f1", "F1"), ("mcc", "MCC"), ("roc_auc", "ROC AUC (threshold-free)")),
          "segmentation": (("pixel_iou", "Pixel IoU"), ("pixel_f1", "Pixel F1 (Dice)"),
                           ("object_f1@0.5", "Object F1 at IoU 0.5"))}


def region_cells(cfg: RunConfig, variants: list[Variant], results: dict[str, dict]) -> pd.DataFrame:
    """One row per (training set, test region): n, groups, metrics with ``_low``/``_high`` bounds, ``seen``
    (the test region was a training region)."""
    task = task_of(variants)
    keys = FOOTPRINT_METRICS if task == "segmentation" else MATRIX_METRICS
    rows = []
    for base, runs in groups_of_runs(variants).items():
        train_regions = runs[0].cfg.data.train_regions or []
        pooled = pooled_table(runs, results)
        if pooled.empty or "region" not in pooled:
            continue
        for region, part in pooled.groupby("region", sort=True):
            m = pooled_scores(cfg, part, task)
            row = {"train_set": base, "train_regions": "+".join(train_regions), "test_region": str(region),
                   "seen": str(region) in train_regions, "runs": int(part["run"].nunique()), "n": m["n"],
                   "groups": m["groups"], "landslide": m["positives"]}
            for key in keys:
                low, high = m["intervals"].get(key) or (None, None)
                row.update({key: m[key], f"{key}_low": low, f"{key}_high": high})
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(row: pd.Series, key: str) -> str:
    value, low, high = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if value is None or pd.isna(value):
        return "–"
    text = f"{value:.3f}"
    if low is not None and not pd.isna(low):
        text += f" [{low:.2f}, {high:.2f}]"
    return text if row["seen"] else f"**{text}**"


def matrix_markdown(cells: pd.DataFrame, key: str) -> list[str]:
    """A training set x test region table of ``key`` (bold: regions the model never saw)."""
    regions = sorted(cells["test_region"].unique())
    lines = ["| trained on \\ tested on | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]
    for train_set, rows in cells.groupby("train_set", sort=False):
        by = {r["test_region"]: r for _, r in rows.iterrows()}
        label = f"{train_set} ({rows['train_regions'].iloc[0]})"
        lines.append(f"| {label} | " + " | ".join(_cell(by[r], key) if r in by else "–" for r in regions) + " |")
    return lines


def write_region_matrix(cfg: RunConfig, variants: list[Variant], results: dict[str, dict]) -> dict[str, str]:
    """``region_matrix.csv`` and ``region_matrix.md`` in ``cfg.output_dir``; returns their URIs (none when no
    run has finished with a test split)."""
    cells = region_cells(cfg, variants, results)
    if cells.empty:
        return {}
    rep = cfg.experiment.repeats
    how = ("pooled out-of-fold test predictions" if rep and rep.folds else
           "test predictions pooled over seeds" if rep and rep.seeds else "test predictions")
    lines = [f"# Across regions: {cfg.name}", "",
             f"Each row trained *and validated* (threshold included) on the regions in brackets; each column is "
             f"one region's held-out test chips ({how}), with {cfg.eval.confidence:.0%} intervals from a bootstrap "
             "over spatial groups. **Bold**: a region the model never saw — what a user sweeping a new region "
             "would get. Counts per cell are in region_matrix.csv."]
    for key, title in _SHOWN[task_of(variants)]:
        lines += ["", f"## {title}", "", *matrix_markdown(cells, key)]
    return write_table(cfg.output_dir, "region_matrix", cells, lines)
