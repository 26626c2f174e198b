"""Reporting experiments: the comparison table of an experiment's runs, its Markdown/CSV/plots, the paired
image-only vs. multi-modal comparison, and the end-of-run summary text."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from landslide import storage
from landslide.config import RunConfig
from landslide.errors import DataError, StorageError
from landslide.evaluation import plots
from landslide.evaluation.segmentation import SUMMARY_METRICS
from landslide.experiments.plan import Variant, task_of
from landslide.training.summary import RunSummary

log = logging.getLogger(__name__)
METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "roc_auc")
"""The metrics every comparison of classifiers reports."""
FOOTPRINT_METRICS = tuple(SUMMARY_METRICS)
"""The metrics every comparison of footprint (segmentation) models reports: pixel IoU, F1, precision and
recall, object F1 at IoU 0.5 and 0.25, area ratio (:data:`landslide.evaluation.segmentation.SUMMARY_METRICS`)."""
_COLUMNS = {"classification": [("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                               ("specificity", "specificity"), ("f1", "F1"), ("mcc", "MCC")],
            "segmentation": [("pixel_iou", "pixel IoU"), ("pixel_f1", "pixel F1"),
                             ("pixel_precision", "pixel precision"), ("pixel_recall", "pixel recall"),
                             ("object_f1@0.5", "object F1 @0.5"), ("area_ratio", "area ratio")]}
_BARS = {"segmentation": (("pixel_iou", "pixel IoU"), ("pixel_f1", "pixel F1"), ("object_f1@0.5", "object F1 @0.5"),
                          ("object_f1@0.25", "object F1 @0.25"))}


def metrics_for(task: str) -> tuple[str, ...]:
    """The metrics a comparison of ``task`` models reports (:data:`METRICS` or :data:`FOOTPRINT_METRICS`)."""
    return FOOTPRINT_METRICS if task == "segmentation" else METRICS


def format_summary(summary: dict) -> str:
    """The end-of-run summary printed by ``landslide train`` and the Ray job (plain text, log friendly):
    ``summary`` is a run's (:class:`RunSummary` JSON) or an experiment's."""
    if "kind" not in summary:  # a single run
        run = RunSummary.from_json(summary)
        lines = [f"run {run.name}: {run.epochs_run} epochs (best {run.best_epoch}), {run.seconds or 0:.0f} s",
                 f"  model:   {run.model_dir}  (threshold {run.threshold:.3f})"]
        if run.test_metrics:
            ci = run.test_intervals
            lines.append("  test:    " + ", ".join(
                f"{k}={v:.3f}" + (f" [{ci[k][0]:.3f}-{ci[k][1]:.3f}]" if k in ci and k in
                                  ("f1", "accuracy", "pixel_iou", "object_f1@0.5") else "")
                for k, v in run.test_metrics.items() if v is not None))
            lines.append(f"  report:  {storage.join(run.output_dir, 'eval', 'report.md')}")
        return "\n".join(lines)
    lines = [f"experiment {summary['name']} ({summary['kind']}): {summary['variants']} variants, "
             f"{len(summary['failed'])} failed, {summary['seconds']:.0f} s"]
    for row in summary["rows"]:
        if row.get("status") == "failed":
            lines.append(f"  {row['variant']:<24} FAILED: {row.get('error')}")
        elif "test_pixel_iou" in row:
            lines.append(f"  {row['variant']:<24} test pixel IoU {_fmt(row.get('test_pixel_iou'))}  "
                         f"F1 {_fmt(row.get('test_pixel_f1'))}  object F1 {_fmt(row.get('test_object_f1@0.5'))}  "
                         f"{_fmt(row.get('seconds'), 0)} s")
        else:
            lines.append(f"  {row['variant']:<24} test acc {_fmt(row.get('test_accuracy'))}  "
                         f"F1 {_fmt(row.get('test_f1'))}  MCC {_fmt(row.get('test_mcc'))}  "
                         f"{_fmt(row.get('seconds'), 0)} s")
    lines += [f"  {k}: {v}" for k, v in summary["files"].items()]
    return "\n".join(lines)


def one_line(summary: dict) -> str:
    """A finished run in one line (its :class:`RunSummary` JSON)."""
    run = RunSummary.from_json(summary)
    m = run.test_metrics
    if not m:
        return f"done in {run.seconds or 0:.0f} s (no test split)"
    if "pixel_iou" in m:
        return (f"test pixel IoU {_fmt(m['pixel_iou'])}, pixel F1 {_fmt(m['pixel_f1'])}, object F1 @0.5 "
                f"{_fmt(m.get('object_f1@0.5'))} in {run.seconds or 0:.0f} s")
    return f"test accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}, MCC {m['mcc']:.3f} in {run.seconds or 0:.0f} s"


def _freeze_label(freeze: dict) -> str:
    strategy = freeze.get("strategy", "all")
    return strategy + (f" {freeze.get('n')}" if strategy in ("last_blocks", "last_layers") else "")


def comparison_table(variants: list[Variant], results: dict[str, dict]) -> pd.DataFrame:
    """One row per variant: size, depth, accuracy by split, test metrics with intervals, time, speed.
    ``results``: each variant's :class:`RunSummary` JSON, or ``{"error": message}``. Footprint models report
    :data:`FOOTPRINT_METRICS` instead of :data:`METRICS`."""
    keys = metrics_for(task_of(variants))
    rows = []
    for variant in variants:
        res = results.get(variant.name, {})
        row: dict[str, Any] = {"variant": variant.name, **variant.params,
                               "backbone": res.get("backbone", variant.cfg.model.backbone)}
        try:
            run = None if "error" in res else RunSummary.from_json(res, f"{variant.cfg.output_dir}/summary.json")
        except StorageError as exc:
            res = {"error": str(exc)}
        if run is None or "error" in res:
            rows.append({**row, "status": "failed", "error": res["error"]})
            continue
        best, test, intervals = run.best_epoch_metrics, run.test_metrics or {}, run.test_intervals
        row.update({
            "status": "ok", "freeze": _freeze_label(run.freeze), "train_images": run.train_images,
            "total_params": run.total_params, "trainable_params": run.trainable_params, "size_mb": run.model_size_mb,
            "depth": run.depth, "image_size": run.image_size, "train_accuracy": best.get("train_accuracy"),
            "val_accuracy": best.get("val_accuracy"), "test_images": run.test_images})
        for key in keys:
            row[f"val_{key}"] = (run.val_metrics or {}).get(key)
            row[f"test_{key}"] = test.get(key)
            row[f"test_{key}_low"], row[f"test_{key}_high"] = intervals.get(key) or (None, None)
        row.update({"epochs_run": run.epochs_run, "best_epoch": run.best_epoch, "seconds": run.seconds,
                    "train_images_per_s": run.train_images_per_s,
                    "inference_images_per_s": run.inference_images_per_s, "output_dir": run.output_dir})
        rows.append(row)
        if run.test_metrics_without_tags:  # the same multi-modal model, every tag unknown
            bare = {**row, "variant": f"{variant.name} (no tags)", "inputs": "image (tags unknown)"}
            for key in METRICS:
                bare[f"test_{key}"] = run.test_metrics_without_tags.get(key)
                bare[f"test_{key}_low"], bare[f"test_{key}_high"] = \
                    run.test_intervals_without_tags.get(key) or (None, None)
            rows.append(bare)
    return pd.DataFrame(rows)


def write_table(out_dir: str, stem: str, table: pd.DataFrame, lines: list[str]) -> dict[str, str]:
    """``<stem>.csv`` (the table) and ``<stem>.md`` (``lines``) in ``out_dir``; returns their URIs under the
    keys ``<stem>_csv`` and ``<stem>``."""
    files = {f"{stem}_csv": storage.join(out_dir, f"{stem}.csv"), stem: storage.join(out_dir, f"{stem}.md")}
    storage.write_text(files[f"{stem}_csv"], table.to_csv(index=False))
    storage.write_text(files[stem], "\n".join(lines) + "\n")
    return files


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, select: str = "mcc", task: str = "classification") -> str:
    """The comparison as a Markdown table (metrics with their intervals), like the study's tables; footprint
    models (``task`` segmentation) show pixel, object and area metrics."""
    shown = _COLUMNS[task]
    cols = ["variant", "backbone", "freeze", "runs", "train images", "params", "size (MB)", "depth", "train acc*",
            "val acc*", f"val {select}†"] + [f"test {label}" for _, label in shown] \
        + ["time (s)", "train img/s", "infer img/s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        if r.get("status") == "failed":
            lines.append(f"| {r['variant']} | {r.get('backbone', '')} | failed: {r.get('error', '')} |"
                         + " |" * (len(cols) - 3))
            continue

        def ci(key: str) -> str:
            value, low, high = r.get(f"test_{key}"), r.get(f"test_{key}_low"), r.get(f"test_{key}_high")
            if value is None or pd.isna(value):
                return "–"
            return f"{value:.3f}" + (f" [{low:.3f}–{high:.3f}]" if low is not None and not pd.isna(low) else "")

        params = r.get("total_params")
        lines.append("| " + " | ".join([
            str(r["variant"]), str(r["backbone"]), str(r.get("freeze", "")), _fmt(r.get("runs", 1)),
            _fmt(r.get("train_images"), 0), f"{params / 1e6:.2f}M" if params and not pd.isna(params) else "–",
            _fmt(r.get("size_mb"), 1), _fmt(r.get("depth"), 0), _fmt(r.get("train_accuracy")),
            _fmt(r.get("val_accuracy")), _fmt(r.get(f"val_{select}")), *(ci(key) for key, _ in shown),
            _fmt(r.get("seconds"), 0), _fmt(r.get("train_images_per_s"), 1),
            _fmt(r.get("inference_images_per_s"), 1)]) + " |")
    return "\n".join(lines) + "\n"


TITLES = {"single": "Repeated run", "compare": "Backbone comparison", "finetune": "Fine-tuning scenarios",
          "transfer": "Weight transfer", "data_size": "Training data size", "modality": "Image-only vs. multi-modal",
          "regions": "Across regions", "variants": "Variants"}


def caption(cfg: RunConfig) -> str:
    """How to read a comparison table: what the test numbers and intervals are."""
    conf, rep = f"{cfg.eval.confidence:.0%}", cfg.experiment.repeats
    if rep and rep.folds:
        head = (f"Test metrics of the pooled out-of-fold predictions of {rep.folds}-fold grouped cross-validation"
                + (f", repeated with seeds {rep.seeds}" if rep.seeds else "")
                + f" (every chip tested once per seed, each fold at its own validation-chosen threshold), with "
                f"{conf} intervals from a bootstrap over spatial groups; every variant uses the same folds.")
    elif rep and rep.seeds:
        head = (f"Test metrics: mean over {len(rep.seeds)} seeds (each seed its own grouped split, the same for "
                f"every variant) with {conf} Student-t intervals of the mean.")
    else:
        head = (f"Test metrics with {conf} bootstrap intervals at each model's validation-chosen threshold; "
                "identical val/test splits for every variant.")
    if cfg.model.task == "segmentation":
        head += (" Footprints: pixel metrics micro-averaged over the test chips' pixels at the validation-chosen "
                 "pixel threshold; object F1 matches each true landslide (connected component) at IoU >= 0.5 after "
                 "the validation-chosen minimum footprint size; area ratio = predicted / true landslide area.")
    return (head + f" *Train and validation accuracy at the best epoch (by {cfg.train.monitor}), threshold 0.5"
            + (" (pixel accuracy for footprint models)" if cfg.model.task == "segmentation" else "") + ". "
            f"†Validation {cfg.experiment.select} at the chosen threshold (mean over runs): it picks the best "
            "variant; test metrics never do. Depth: layers with weights.")


def write_comparison(cfg: RunConfig, table: pd.DataFrame) -> dict[str, str]:
    """comparison.csv / .md / .png, plus the kind's own plot (metric vs depth, learning curve)."""
    out = cfg.output_dir
    kind = cfg.experiment.kind
    files = {"csv": storage.join(out, "comparison.csv"), "markdown": storage.join(out, "comparison.md")}
    storage.write_text(files["csv"], table.to_csv(index=False))
    task = cfg.model.task
    storage.write_text(files["markdown"], f"# {TITLES[kind]}: {cfg.name}\n\n{caption(cfg)}\n\n"
                       + markdown_table(table, cfg.experiment.select, task))
    ok = table[table["status"] == "ok"] if "status" in table else table.iloc[0:0]
    if ok.empty:
        return files
    bars = _BARS.get(task)
    files["plot"] = plots.metric_bars(ok, storage.join(out, "comparison.png"), TITLES[kind], bars)
    if kind == "finetune":
        depth = ok[ok["strategy"].isin(["last_blocks", "last_layers"])]
        if not depth.empty:
            files["depth_plot"] = plots.metric_lines(depth, "n", "strategy", storage.join(out, "finetune_depth.png"),
                                                     "unfrozen blocks / layers (N)", "Metrics vs. unfrozen depth",
                                                     bars)
    if kind == "data_size":
        files["learning_curve"] = plots.metric_lines(ok, "train_images", None,
                                                     storage.join(out, "learning_curve.png"),
                                                     "training images", "Learning curve", bars)
    return files



def _predictions(run_dir: str, name: str) -> pd.DataFrame:
    return storage.read_table(storage.join(run_dir, "eval", name), "predictions table")


def write_modality(cfg: RunConfig, variants: list[Variant]) -> dict[str, str]:
    """Paired comparison on the identical test images: multi-modal (with tags, and with every tag unknown)
    minus image-only, with paired bootstrap intervals; plus the leakage verdict. Writes modality.json/.md."""
    from landslide.evaluation.leakage import leakage_lines
    from landslide.evaluation.metrics import paired_difference

    image_dir, multi_dir = (v.cfg.output_dir for v in variants)
    try:
        image = _predictions(image_dir, "predictions.csv")
        multi = _predictions(multi_dir, "predictions.csv")
        bare = _predictions(multi_dir, "predictions_without_tags.csv")
        thresholds = [RunSummary.read(storage.join(d, "summary.json")).threshold for d in (image_dir, multi_dir)]
        leakage = storage.read_json(storage.join(multi_dir, "tag_leakage.json")) \
            if storage.exists(storage.join(multi_dir, "tag_leakage.json")) else None
    except (StorageError, DataError, KeyError, ValueError) as exc:
        log.warning("modality comparison skipped: %s", exc)
        return {}
    both = image[["uri", "target", "probability"]].merge(multi[["uri", "probability"]], on="uri",
                                                          suffixes=("_image", "_multi"))
    both = both.merge(bare[["uri", "probability"]].rename(columns={"probability": "probability_bare"}), on="uri")
    y = both["target"].to_numpy()
    ev = cfg.eval
    result = {"test_images": int(len(both)), "confidence": ev.confidence, "bootstrap": ev.bootstrap,
              "thresholds": {"image_only": thresholds[0], "multimodal": thresholds[1]},
              "with_tags_minus_image_only": paired_difference(
                  y, both["probability_multi"], thresholds[1], both["probability_image"], thresholds[0],
                  ev.bootstrap, ev.confidence, cfg.train.seed),
              "without_tags_minus_image_only": paired_difference(
                  y, both["probability_bare"], thresholds[1], both["probability_image"], thresholds[0],
                  ev.bootstrap, ev.confidence, cfg.train.seed),
              "leakage": leakage}
    result["verdict"] = _modality_verdict(result)
    files = {"modality_json": storage.join(cfg.output_dir, "modality.json"),
             "modality_markdown": storage.join(cfg.output_dir, "modality.md")}
    storage.write_json(files["modality_json"], result)
    lines = [f"# Do tags help? {cfg.name}", "", f"**{result['verdict']}**", "",
             f"Paired differences on the same {len(both)} test images (each model at its own validation-chosen "
             f"threshold), {ev.confidence:.0%} paired bootstrap intervals; * = the interval excludes 0.", "",
             "| metric | multi-modal with tags − image-only | multi-modal without tags − image-only |",
             "|---|---|---|"]
    for key, diff in result["with_tags_minus_image_only"].items():
        other = result["without_tags_minus_image_only"][key]
        lines.append(f"| {key} | {_diff(diff)} | {_diff(other)} |")
    if leakage:
        lines += ["", "## Tag leakage (training split)", "", *leakage_lines(leakage)]
    storage.write_text(files["modality_markdown"], "\n".join(lines) + "\n")
    return files


def _diff(d: dict) -> str:
    ci = d.get("interval")
    return f"{d['difference']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "") + \
        (" *" if d.get("significant") else "")


def _modality_verdict(result: dict) -> str:
    leaks = (result.get("leakage") or {}).get("leaks")
    f1 = result["with_tags_minus_image_only"]["f1"]
    mcc = result["with_tags_minus_image_only"]["mcc"]
    if leaks:
        return ("Tags leak the label in this data (see below): any gain with tags measures the leak, not the "
                "model. Compare the image-only model with the multi-modal model without tags instead.")
    if f1["significant"] and f1["difference"] > 0 or mcc["significant"] and mcc["difference"] > 0:
        return (f"Tags help: F1 {f1['difference']:+.3f}, MCC {mcc['difference']:+.3f} over image-only "
                "(intervals exclude 0).")
    if f1["significant"] and f1["difference"] < 0 or mcc["significant"] and mcc["difference"] < 0:
        return f"Tags hurt: F1 {f1['difference']:+.3f}, MCC {mcc['difference']:+.3f} against image-only."
    return (f"No measurable effect of tags: F1 {f1['difference']:+.3f}, MCC {mcc['difference']:+.3f} against "
            "image-only, intervals include 0.")
