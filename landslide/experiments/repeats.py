"""Repeated experiments: aggregate the runs of each variant (folds and/or seeds), pick and export the best.

With cross-validation (``experiment.repeats.folds``) every chip is tested exactly once per seed. The test
predictions of all folds are pooled, each fold's decisions taken at that fold's own validation-chosen
threshold, and the metrics of the pooled set get intervals from a bootstrap over spatial *groups* (neighbouring
chips are not independent evidence). The spread of the per-run metrics (mean, standard deviation, Student-t
interval) is reported beside it. Seeds alone (no folds) give one grouped split per seed; then the estimate is
the mean over runs with its t interval.

The best variant is chosen by its mean *validation* metric (``experiment.select``); test metrics never choose.
Its model (the run with the best validation value) is copied with its card to ``output_dir/best_model``, the
card extended with the selection and the variant's cross-validated test estimate. Because the winner of many
close validation comparisons is partly the luckiest, ``selection_estimate`` also measures the selection procedure
itself by nested cross-validation: each fold's choice made on that fold's validation data alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from landslide import storage
from landslide.config import RunConfig
from landslide.errors import DataError, StorageError
from landslide.evaluation.metrics import across_runs, pooled_metrics
from landslide.evaluation.segmentation import IOU_THRESHOLDS, segmentation_metrics, summary_metrics
from landslide.experiments.plan import Variant, task_of
from landslide.experiments.report import metrics_for

log = logging.getLogger(__name__)
_RUN_KEYS = ("fold", "seed")


def groups_of_runs(variants: list[Variant]) -> dict[str, list[Variant]]:
    """Runs by the variant they repeat, in plan order."""
    out: dict[str, list[Variant]] = {}
    for v in variants:
        out.setdefault(v.base or v.name, []).append(v)
    return out


def read_run_table(run_dir: str, name: str) -> pd.DataFrame:
    """A run's ``eval/<name>`` (e.g. predictions.csv) with each chip's spatial group from ``splits.csv``."""
    table = storage.read_table(storage.join(run_dir, "eval", name), f"{name} of {run_dir}")
    splits = storage.read_table(storage.join(run_dir, "splits.csv"), f"splits of {run_dir}")
    if "group" in splits.columns:
        table = table.merge(splits[["uri", "group"]].drop_duplicates("uri"), on="uri", how="left")
    if "group" not in table.columns:
        table["group"] = table["uri"]
    # the same group under several seeds stays one group: a bootstrap draw takes all of its observations
    table["group"] = table["group"].astype(str)
    return table


def test_table_name(task: str) -> str:
    """The per-chip test table a run writes in ``eval/``: ``predictions.csv`` (classifiers: target,
    prediction, probability) or ``footprints.csv`` (footprint models: pixel and object counts per chip)."""
    return "footprints.csv" if task == "segmentation" else "predictions.csv"


def pooled_scores(cfg: RunConfig, pooled: pd.DataFrame, task: str) -> dict:
    """The test metrics of pooled per-chip rows (:func:`pooled_table`), each run's decisions at its own
    validation-chosen thresholds, with intervals from a bootstrap over spatial groups: ``{n, groups,
    positives, <metric>: value, ..., intervals: {<metric>: [low, high]}}`` with the metrics of
    :func:`landslide.experiments.report.metrics_for` ``task``. Footprint metrics are ratios of counts summed
    over the pooled chips (:func:`landslide.evaluation.segmentation.segmentation_metrics`)."""
    ev, seed = cfg.eval, cfg.train.seed
    if task != "segmentation":
        m = pooled_metrics(pooled["target"], pooled["prediction"], pooled["probability"], pooled["group"],
                           ev.bootstrap, ev.confidence, seed)
        return {"n": m["n"], "groups": m["groups"], "positives": m["positives"],
                **{k: m[k] for k in metrics_for(task)}, "intervals": m["intervals"]}
    counts = pooled[["tp", "fp", "fn", "tn", "pred_objects", "true_objects",
                     *(f"matched@{t:g}" for t in IOU_THRESHOLDS)]].astype(float)
    m = segmentation_metrics(counts, pooled["group"].to_numpy(), IOU_THRESHOLDS, ev.bootstrap, ev.confidence, seed)
    values, intervals = summary_metrics(m)
    return {"n": int(len(pooled)), "groups": int(pooled["group"].nunique()),
            "positives": int((pooled["tp"] + pooled["fn"] > 0).sum()), **values, "intervals": intervals}


def pooled_table(runs: list[Variant], results: dict[str, dict], name: str | None = None) -> pd.DataFrame:
    """The ``eval/<name>`` tables of a variant's finished runs (default: the per-chip test table of their task,
    :func:`test_table_name`), concatenated, with ``run`` and ``group``."""
    name = name or test_table_name(task_of(runs))
    frames = []
    for v in runs:
        res = results.get(v.name, {})
        if "error" in res or not res.get("test_metrics"):
            continue
        try:
            frame = read_run_table(v.cfg.output_dir, name)
        except (StorageError, DataError) as exc:
            log.warning("%s: %s", v.name, exc)
            continue
        frames.append(frame.assign(run=v.name.rsplit("/", 1)[-1]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return float(np.mean(vals)) if vals else None


def aggregate_table(cfg: RunConfig, variants: list[Variant], results: dict[str, dict]) -> pd.DataFrame:
    """One row per variant over its runs: test metrics (pooled out-of-fold with group-bootstrap intervals, or
    the mean over seeds with t intervals), the per-run mean and spread, and mean validation metrics."""
    rep = cfg.experiment.repeats
    folds = bool(rep and rep.folds)
    task = task_of(variants)
    keys = metrics_for(task)
    rows = []
    for base, runs in groups_of_runs(variants).items():
        ok = [results[v.name] for v in runs if v.name in results and "error" not in results[v.name]]
        first = runs[0]
        row: dict[str, Any] = {"variant": base, **{k: v for k, v in first.params.items() if k not in _RUN_KEYS},
                               "backbone": first.cfg.model.backbone, "runs": len(ok),
                               "failed_runs": len(runs) - len(ok)}
        if not ok:
            errors = [results.get(v.name, {}).get("error", "not run") for v in runs]
            rows.append({**row, "status": "failed", "error": errors[0]})
            continue
        freeze = ok[0]["freeze"]
        row.update({
            "status": "ok", "backbone": ok[0].get("backbone", row["backbone"]),
            "freeze": freeze["strategy"] + (f" {freeze['n']}" if freeze["strategy"] in ("last_blocks", "last_layers")
                                            else ""),
            "estimate": "out-of-fold" if folds else "mean of runs",
            **{k: _mean([r.get(k) for r in ok]) for k in ("train_images", "total_params", "trainable_params",
                                                          "model_size_mb", "depth", "image_size",
                                                          "train_images_per_s", "inference_images_per_s")},
            "train_accuracy": _mean([r.get("best_epoch_metrics", {}).get("train_accuracy") for r in ok]),
            "val_accuracy": _mean([r.get("best_epoch_metrics", {}).get("val_accuracy") for r in ok]),
            "seconds": float(sum(r.get("seconds", 0) for r in ok)),
            "test_images": int(sum(r.get("test_images", 0) for r in ok))})
        row["size_mb"] = row.pop("model_size_mb")
        for key in keys:
            row[f"val_{key}"] = _mean([r.get("val_metrics", {}).get(key) for r in ok])
            spread = across_runs([r.get("test_metrics", {}).get(key) for r in ok], cfg.eval.confidence)
            row[f"test_{key}_runs_mean"], row[f"test_{key}_runs_std"] = spread["mean"], spread["std"]
            row[f"test_{key}"] = spread["mean"]
            low, high = spread["interval"] or (None, None)
            if low is not None:  # a t interval can pass a metric's range with few runs (area ratio has no top)
                low, high = max(low, -1.0 if key == "mcc" else 0.0), high if key == "area_ratio" else min(high, 1.0)
            row[f"test_{key}_low"], row[f"test_{key}_high"] = low, high
        if folds:
            pooled = pooled_table(runs, results)
            if not pooled.empty:
                m = pooled_scores(cfg, pooled, task)
                row["test_images"], row["test_groups"] = m["n"], m["groups"]
                for key in keys:
                    row[f"test_{key}"] = m[key]
                    row[f"test_{key}_low"], row[f"test_{key}_high"] = m["intervals"].get(key) or (None, None)
                storage.write_text(storage.join(_variant_dir(first), test_table_name(task).replace(
                    ".csv", "_out_of_fold.csv")), pooled.to_csv(index=False))
        row["output_dir"] = _variant_dir(first)
        rows.append(row)
    return pd.DataFrame(rows)


def _variant_dir(run: Variant) -> str:
    """The folder holding a variant's runs (a run folder's parent when repeated)."""
    return storage.parent(run.cfg.output_dir) if run.base else run.cfg.output_dir


def candidates(variants: list[Variant]) -> dict[str, list[Variant]]:
    """The variants that may be selected (with their runs): those trained on the whole training split."""
    return {name: runs for name, runs in groups_of_runs(variants).items()
            if runs[0].cfg.data.train_fraction == 1 and not runs[0].cfg.data.train_filter}


def select_best(table: pd.DataFrame, metric: str, variants: list[Variant]) -> pd.Series | None:
    """The row with the highest mean validation ``metric`` (ties: plan order) among the variants trained on
    the whole training split: data-size fractions and subsets (e.g. a transfer stage on one scene) are
    ablations that answer a question, not models to ship."""
    key = f"val_{metric}"
    if table.empty or "status" not in table or key not in table:
        return None
    ok = table[(table["status"] == "ok") & table[key].notna() & table["variant"].isin(candidates(variants))]
    if ok.empty:
        return None
    return ok.loc[ok[key].astype(float).idxmax()]


def selection_estimate(cfg: RunConfig, variants: list[Variant], results: dict[str, dict], metric: str
                       ) -> dict | None:
    """Test estimate of the *selection procedure* (nested cross-validation): in each fold (and seed), the
    candidate with the best validation ``metric`` of that fold; the test predictions of those choices, pooled,
    with group-bootstrap intervals. The selected variant's out-of-fold estimate measures that variant; this
    measures the whole procedure, including a choice made on noisy validation data (the winner of many close
    comparisons is partly the luckiest), and no fold's choice sees its test chips. None without folds or
    finished runs."""
    rep = cfg.experiment.repeats
    if not (rep and rep.folds):
        return None
    best: dict[str, tuple[float, Variant]] = {}
    for runs in candidates(variants).values():
        for v in runs:
            value = results.get(v.name, {}).get("val_metrics", {}).get(metric)
            if "error" in results.get(v.name, {"error": 1}) or value is None or np.isnan(value):
                continue
            key = v.name.rsplit("/", 1)[-1]  # fold-i[-seed-s]
            if key not in best or value > best[key][0]:  # ties: plan order
                best[key] = (float(value), v)
    chosen = {key: best[key][1] for key in sorted(best)}
    if not chosen:
        return None
    pooled = pooled_table(list(chosen.values()), results)
    if pooled.empty:
        return None
    task = task_of(variants)
    keys = metrics_for(task)
    m = pooled_scores(cfg, pooled, task)
    return {"chosen": {key: v.base or v.name for key, v in chosen.items()},
            "validation": {key: best[key][0] for key in chosen}, "n": m["n"], "groups": m["groups"],
            "test": {k: _num(m[k]) for k in keys},
            "test_intervals": {k: m["intervals"][k] for k in keys if k in m["intervals"]}}


def export_best(out_dir: str, best: pd.Series, runs: list[Variant], results: dict[str, dict], metric: str,
                label: str | None = None) -> dict:
    """Copy the best variant's best run (by validation ``metric``) to ``out_dir/best_model`` and extend its card
    with how it was chosen and the variant's test estimate. Returns the selection record."""
    from landslide.models.checkpoint import CARD_FILE, WEIGHTS_FILE, read_card, write_card

    finished = [v for v in runs if "error" not in results.get(v.name, {"error": 1})]
    run = max(finished, key=lambda v: results[v.name].get("val_metrics", {}).get(metric, float("-inf")))
    source = results[run.name]["model_dir"]
    target = storage.join(out_dir, "best_model")
    storage.makedirs(target)
    for name in (WEIGHTS_FILE, CARD_FILE):  # weights first: a card always has its weights
        storage.write_bytes(storage.join(target, name), storage.read_bytes(storage.join(source, name)))
    keys = metrics_for(task_of(runs))
    selection = {"variant": label or str(best["variant"]), "run": run.name, "source": source,
                 "selected_by": f"mean validation {metric} over the variant's runs "
                                f"({best[f'val_{metric}']:.4f}); run with the best validation {metric}",
                 "runs": int(best.get("runs", 1)), "estimate": best.get("estimate", "single run"),
                 "test": {k: _num(best.get(f"test_{k}")) for k in keys},
                 "test_intervals": {k: [_num(best.get(f"test_{k}_low")), _num(best.get(f"test_{k}_high"))]
                                    for k in keys if _num(best.get(f"test_{k}_low")) is not None}}
    card = read_card(target)
    card.selection = selection
    write_card(card, target)
    return {**selection, "model_dir": target}


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return float(value)
