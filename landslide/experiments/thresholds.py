"""Threshold rules compared across the folds of a cross-validated experiment.

Every run chooses its decision threshold on its own validation split; in the study that this project
reproduces, the per-fold thresholds scattered from 0.39 to 0.87. For each variant and each rule of
:data:`landslide.evaluation.metrics.THRESHOLD_RULES` (fixed 0.5, F1-max, Youden's J) this module scores two
schemes on the pooled out-of-fold test predictions, with group-bootstrap intervals:

- **per fold**: each fold at the threshold the rule chose on that fold's validation split (what the runs do);
- **pooled**: one threshold, chosen by the rule on the validation predictions of all folds together (more
  validation data, one number), applied to every fold.

No test label chooses anything: both schemes choose on validation data, the test split only scores them.
Writes ``threshold_rules.csv`` and ``threshold_rules.md`` in the experiment's folder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from landslide.config import RunConfig
from landslide.evaluation.metrics import THRESHOLD_RULES, pooled_metrics, threshold_rules
from landslide.experiments.plan import Variant, task_of
from landslide.experiments.repeats import groups_of_runs, pooled_table
from landslide.experiments.report import write_table

KEYS = ("f1", "mcc", "accuracy", "precision", "recall")


def rule_rows(cfg: RunConfig, variants: list[Variant], results: dict[str, dict]) -> pd.DataFrame:
    """One row per variant, rule and scheme: thresholds, n, metrics with ``_low``/``_high`` bounds."""
    rows = []
    if task_of(variants) == "segmentation":  # pixel thresholds: chosen per run; chip rules do not apply
        return pd.DataFrame()
    for base, runs in groups_of_runs(variants).items():
        test = pooled_table(runs, results)
        val = pooled_table(runs, results, "validation_predictions.csv")
        if test.empty or val.empty:
            continue
        per_run = {v.name.rsplit("/", 1)[-1]: results[v.name].get("threshold_rules") or {}
                   for v in runs if v.name in results}
        pooled = threshold_rules(val["target"].to_numpy(), val["probability"].to_numpy(), cfg.eval.fixed_threshold)
        for rule in THRESHOLD_RULES:
            per_fold = test["run"].map(lambda r: per_run.get(r, {}).get(rule, np.nan)).to_numpy(dtype=float)
            for scheme, t in (("per fold", per_fold), ("pooled", np.full(len(test), pooled[rule]))):
                ok = np.isfinite(t)
                part = test[ok]
                decided = (part["probability"].to_numpy() >= t[ok]).astype(int)
                m = pooled_metrics(part["target"], decided, part["probability"], part["group"], cfg.eval.bootstrap,
                                   cfg.eval.confidence, cfg.train.seed)
                row = {"variant": base, "rule": rule, "scheme": scheme, "threshold_min": float(np.nanmin(t)),
                       "threshold_max": float(np.nanmax(t)), "n": m["n"], "groups": m["groups"]}
                for key in KEYS:
                    low, high = m["intervals"].get(key) or (None, None)
                    row.update({key: m[key], f"{key}_low": low, f"{key}_high": high})
                rows.append(row)
    return pd.DataFrame(rows)


def write_threshold_rules(cfg: RunConfig, variants: list[Variant], results: dict[str, dict]) -> dict[str, str]:
    """``threshold_rules.csv``/``.md`` in ``cfg.output_dir``; empty when no run left validation predictions."""
    table = rule_rows(cfg, variants, results)
    if table.empty:
        return {}
    conf = f"{cfg.eval.confidence:.0%}"
    lines = [f"# Threshold rules: {cfg.name}", "",
             "Each rule chooses on validation data only: *per fold* on each fold's validation split, *pooled* once on "
             "all folds' validation predictions. Test metrics of the pooled out-of-fold predictions at those "
             f"thresholds, {conf} intervals from a bootstrap over spatial groups.", "",
             "| variant | rule | scheme | threshold(s) | F1 | MCC | precision | recall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        thresholds = (f"{r.threshold_min:.3f}" if r.threshold_min == r.threshold_max
                      else f"{r.threshold_min:.3f} – {r.threshold_max:.3f}")

        def cell(key: str) -> str:
            value, low, high = getattr(r, key), getattr(r, f"{key}_low"), getattr(r, f"{key}_high")
            if value is None or pd.isna(value):
                return "–"
            return f"{value:.3f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None and not pd.isna(low) else "")

        lines.append(f"| {r.variant} | {r.rule} | {r.scheme} | {thresholds} | "
                     + " | ".join(cell(k) for k in ("f1", "mcc", "precision", "recall")) + " |")
    return write_table(cfg.output_dir, "threshold_rules", table, lines)
