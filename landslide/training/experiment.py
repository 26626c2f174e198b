"""Experiments: several training runs planned from one config, run by any runner, compared in one table.

Kinds (``experiment.kind``), after the study's experiments:

- ``single``: one run in ``output_dir``.
- ``compare``: the same data, splits and budget for several backbones.
- ``finetune``: a grid over freezing strategy and depth (last N blocks / last N layers).
- ``transfer``: stages in order; each later stage starts from the previous stage's model (weight transfer).
- ``data_size``: growing training subsets (fractions or named sets) against fixed val/test splits.
- ``modality``: image-only vs. the multi-modal model on the same splits.
- ``study``: several of the above (``parts``) on the same data, with one report (landslide.training.study).

``repeats`` runs every variant once per cross-validation fold and/or seed (``<variant>/fold-i``); the
comparison then aggregates the runs (landslide.training.repeats) and the best variant by validation metric is
exported to ``output_dir/best_model``.

Each variant is a plain :class:`RunConfig` with its own folder ``output_dir/variants/<name>``; the runner is
``run_training`` locally and a Ray TorchTrainer in ``ray_jobs.train``, so both produce the same files. A
variant whose ``summary.json`` exists is finished and never re-run or overwritten, which makes a re-submitted
experiment resume where it stopped. A failing variant is recorded and the others still run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from landslide import storage
from landslide.config import ExperimentConfig, RunConfig, dump_config, parse_config
from landslide.errors import ConfigError, DataError, LandslideError, StorageError
from landslide.evaluation import plots
from landslide.models.registry import get_spec

log = logging.getLogger(__name__)
Runner = Callable[[RunConfig], dict]
METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "roc_auc")


@dataclass
class Variant:
    name: str
    cfg: RunConfig
    params: dict[str, Any] = field(default_factory=dict)
    depends_on: str | None = None
    base: str | None = None
    """Repeated experiments: the variant this run repeats (one fold or seed of it); None when not repeated."""
    part: str | None = None
    """Studies: the part this variant belongs to."""
    follows_previous: bool = False
    """Transfer: the run starts from the model of ``depends_on`` (so each fold starts from the same fold)."""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "variant"


def _derive(cfg: RunConfig, name: str, overrides: dict[str, Any]) -> RunConfig:
    raw = cfg.model_dump(mode="json")
    raw.pop("experiment")
    raw["name"] = f"{cfg.name}-{name}"
    raw["output_dir"] = storage.join(cfg.output_dir, "variants", name)
    return parse_config(raw, f"experiment variant {name!r}", overrides)


def part_config(cfg: RunConfig, part: ExperimentConfig) -> RunConfig:
    """A study part as an experiment of its own: the study's settings with the part's ``set`` overrides, its
    own folder, and the study's repeats unless the part has its own."""
    raw = cfg.model_dump(mode="json")
    exp = part.model_dump(mode="json", exclude={"name", "set", "parts"})
    if exp.get("repeats") is None:
        exp["repeats"] = raw["experiment"]["repeats"]
    raw["experiment"] = exp
    raw["name"] = f"{cfg.name}-{part.name}"
    raw["output_dir"] = storage.join(cfg.output_dir, _slug(part.name))
    return parse_config(raw, f"study part {part.name!r}", part.set)


def repeat_tags(cfg: RunConfig) -> list[tuple[str, int | None, int | None]]:
    """(folder tag, fold, seed) of each repeat of a variant; empty when the experiment is not repeated."""
    rep = cfg.experiment.repeats
    if rep is None or (not rep.folds and not rep.seeds):
        return []
    out = []
    for seed in rep.seeds or [None]:
        for fold in range(rep.folds) if rep.folds else [None]:
            tag = "-".join(([f"fold-{fold}"] if fold is not None else []) + ([f"seed-{seed}"] if seed is not None
                                                                              else []))
            out.append((tag, fold, seed))
    return out


def plan(cfg: RunConfig) -> list[Variant]:
    """The runs an experiment consists of, in the order they must run."""
    exp = cfg.experiment
    if exp.kind == "study":
        variants = []
        for part in exp.parts:
            for v in plan(part_config(cfg, part)):
                v.name, v.part = f"{part.name}/{v.name}", part.name
                v.depends_on = f"{part.name}/{v.depends_on}" if v.depends_on else None
                v.base = f"{part.name}/{v.base}" if v.base else None
                variants.append(v)
        return variants
    variants = _plan_kind(cfg)
    tags = repeat_tags(cfg)
    if tags:
        variants = _repeat(cfg, variants, tags)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"experiment {exp.kind!r}: variant names repeat ({names}); make them unique")
    return variants


def _repeat(cfg: RunConfig, variants: list[Variant], tags: list[tuple[str, int | None, int | None]]
            ) -> list[Variant]:
    """Each variant once per fold/seed, in folders ``<variant folder>/<fold-i[-seed-s]>``."""
    rep = cfg.experiment.repeats
    by_name = {v.name: v for v in variants}
    out = []
    for v in variants:
        for tag, fold, seed in tags:
            overrides: dict[str, Any] = {}
            if fold is not None:
                overrides.update({"data.split.folds": rep.folds, "data.split.fold": fold})
            if seed is not None:
                overrides.update({"train.seed": seed, "data.split.seed": seed})
            if v.follows_previous:
                overrides["train.init_from"] = storage.join(by_name[v.depends_on].cfg.output_dir, tag, "model")
            raw = v.cfg.model_dump(mode="json")
            raw.pop("experiment")
            raw["name"], raw["output_dir"] = f"{v.cfg.name}-{tag}", storage.join(v.cfg.output_dir, tag)
            params = {**v.params, **({"fold": fold} if fold is not None else {}),
                      **({"seed": seed} if seed is not None else {})}
            out.append(Variant(f"{v.name}/{tag}", parse_config(raw, f"experiment run {v.name}/{tag}", overrides),
                               params, f"{v.depends_on}/{tag}" if v.depends_on else None, base=v.name))
    return out


def _plan_kind(cfg: RunConfig) -> list[Variant]:
    exp = cfg.experiment
    variants: list[Variant] = []
    if exp.kind == "single":
        if repeat_tags(cfg):
            return [Variant("run", _derive(cfg, "run", {}))]
        return [Variant(cfg.name, cfg)]
    if exp.kind == "compare":
        extra = {get_spec(k).name: v for k, v in exp.model_overrides.items()}
        unknown = set(extra) - set(exp.backbones)
        if unknown:
            raise ConfigError(f"experiment.model_overrides names backbones not in experiment.backbones: "
                              f"{sorted(unknown)}")
        for backbone in exp.backbones:
            overrides = {"model.backbone": backbone, **{f"model.{k}": v for k, v in extra.get(backbone, {}).items()}}
            variants.append(Variant(_slug(backbone), _derive(cfg, _slug(backbone), overrides),
                                    {"backbone": backbone}))
    elif exp.kind == "finetune":
        for entry in exp.freeze:
            depths = [0] if entry.strategy in ("head", "all") else entry.n
            for n in depths:
                name = entry.strategy if entry.strategy in ("head", "all") else f"{entry.strategy}-{n}"
                overrides = {"model.freeze.strategy": entry.strategy, "model.freeze.n": n}
                variants.append(Variant(name, _derive(cfg, name, overrides), {"strategy": entry.strategy, "n": n}))
    elif exp.kind == "transfer":
        previous: Variant | None = None
        for i, stage in enumerate(exp.stages):
            name = _slug(stage.name)
            overrides = dict(stage.set)
            follows = previous is not None and "train.init_from" not in overrides
            if follows:
                overrides["train.init_from"] = storage.join(previous.cfg.output_dir, "model")
            variant = Variant(name, _derive(cfg, name, overrides), {"stage": i + 1, "stage_name": stage.name},
                              previous.name if previous else None, follows_previous=follows)
            variants.append(variant)
            previous = variant
    elif exp.kind == "data_size":
        for f in exp.fractions:
            name = f"fraction-{f:g}"
            variants.append(Variant(name, _derive(cfg, name, {"data.train_fraction": f}), {"fraction": f}))
        for subset in exp.subsets:
            name = _slug(subset.name)
            variants.append(Variant(name, _derive(cfg, name, {"data.train_filter": subset.filter}),
                                    {"subset": subset.name}))
    elif exp.kind == "modality":
        variants.append(Variant("image-only", _derive(cfg, "image-only", {"model.tags": None}), {"inputs": "image"}))
        variants.append(Variant("multimodal", _derive(cfg, "multimodal", {}), {"inputs": "image + tags"}))
    return variants


def finished_summary(cfg: RunConfig) -> dict | None:
    """The summary of a finished run folder, or None when the run has not finished."""
    uri = storage.join(cfg.output_dir, "summary.json")
    try:
        return storage.read_json(uri) if storage.exists(uri) else None
    except StorageError:
        return None


def run_experiment(cfg: RunConfig, runner: Runner, report: Callable[[str], None] = print,
                   train: bool = True) -> dict:
    """Run every variant not yet finished, then write the comparison. Returns the experiment summary.
    ``train=False``: run nothing; the comparison (or study report) covers the runs finished so far."""
    variants = plan(cfg)
    start = time.perf_counter()
    if cfg.experiment.kind == "single" and not repeat_tags(cfg):
        done = finished_summary(cfg)
        if done is not None:
            report(f"{cfg.name}: already finished in {cfg.output_dir}; nothing to do (use a new output_dir "
                   "or name to train again)")
            return done
        return runner(cfg)

    storage.makedirs(cfg.output_dir)
    storage.write_text(storage.join(cfg.output_dir, "experiment.yaml"), dump_config(cfg))
    results: dict[str, dict] = {}
    for i, variant in enumerate(variants, 1):
        head = f"[{i}/{len(variants)}] {variant.name}"
        if variant.depends_on and "error" in results.get(variant.depends_on, {}):
            results[variant.name] = {"error": f"not run: stage {variant.depends_on!r} failed"}
            report(f"{head}: skipped, {results[variant.name]['error']}")
            continue
        done = finished_summary(variant.cfg)
        if done is not None:
            report(f"{head}: already finished, kept as is ({variant.cfg.output_dir})")
            results[variant.name] = done
            continue
        if not train:
            results[variant.name] = {"error": "not finished yet (report only)"}
            continue
        report(f"{head}: training -> {variant.cfg.output_dir}")
        try:
            results[variant.name] = runner(variant.cfg)
        except LandslideError as exc:
            results[variant.name] = {"error": str(exc)}
            report(f"{head}: FAILED: {exc}")
            continue
        report(f"{head}: {_one_line(results[variant.name])}")
    if cfg.experiment.kind == "study":
        from landslide.training.study import combined_table, write_study

        parts = {}
        for part in cfg.experiment.parts:
            pcfg = part_config(cfg, part)
            pvariants = plan(pcfg)
            parts[part.name] = {"cfg": pcfg, **write_results(pcfg, pvariants, {
                v.name: results[f"{part.name}/{v.name}"] for v in pvariants}, export=False)}
        table = combined_table(parts)
        files = write_study(cfg, parts, variants, results)
    else:
        outcome = write_results(cfg, variants, results)
        table, files = outcome["table"], outcome["files"]
    summary = {"name": cfg.name, "kind": cfg.experiment.kind, "output_dir": cfg.output_dir,
               "variants": len(variants), "failed": [n for n, r in results.items() if "error" in r],
               "files": files, "seconds": time.perf_counter() - start, "rows": _records(table)}
    storage.write_json(storage.join(cfg.output_dir, "experiment_summary.json"), summary)
    return summary


def _records(table: pd.DataFrame) -> list[dict]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def write_results(cfg: RunConfig, variants: list[Variant], results: dict[str, dict], export: bool = True) -> dict:
    """The comparison of one experiment: per-run table, the aggregate over repeats (when repeated), files and
    plots, and (``export``) the best variant's model in ``output_dir/best_model``. Returns table/files/best."""
    from landslide.training import repeats

    runs = comparison_table(variants, results)
    files: dict[str, str] = {}
    if repeat_tags(cfg):
        files["runs_csv"] = storage.join(cfg.output_dir, "runs.csv")
        storage.write_text(files["runs_csv"], runs.to_csv(index=False))
        table = repeats.aggregate_table(cfg, variants, results)
    else:
        table = runs.assign(runs=(runs["status"] == "ok").astype(int)) if "status" in runs else runs
    files.update(write_comparison(cfg, table))
    if cfg.experiment.kind == "modality" and not repeat_tags(cfg) and not any("error" in r for r in results.values()):
        files.update(write_modality(cfg, variants))
    best = None
    if export and len(variants) > 1:
        row = repeats.select_best(table, cfg.experiment.select, variants)
        if row is not None:
            best = repeats.export_best(cfg.output_dir, row, repeats.groups_of_runs(variants)[row["variant"]],
                                       results, cfg.experiment.select)
            files["best_model"] = best["model_dir"]
    return {"table": table, "runs": runs, "files": files, "best": best}


def format_summary(summary: dict) -> str:
    """The end-of-run summary printed by ``landslide train`` and the Ray job (plain text, log friendly)."""
    if "kind" not in summary:  # a single run
        lines = [f"run {summary['name']}: {summary.get('epochs_run')} epochs (best {summary.get('best_epoch')}), "
                 f"{summary.get('seconds', 0):.0f} s",
                 f"  model:   {summary.get('model_dir')}  (threshold {summary.get('threshold', 0.5):.3f})"]
        if summary.get("test_metrics"):
            ci = summary.get("test_intervals", {})
            lines.append("  test:    " + ", ".join(
                f"{k}={v:.3f}" + (f" [{ci[k][0]:.3f}-{ci[k][1]:.3f}]" if k in ci and k in ("f1", "accuracy") else "")
                for k, v in summary["test_metrics"].items() if v is not None))
            lines.append(f"  report:  {storage.join(summary['output_dir'], 'eval', 'report.md')}")
        return "\n".join(lines)
    lines = [f"experiment {summary['name']} ({summary['kind']}): {summary['variants']} variants, "
             f"{len(summary['failed'])} failed, {summary['seconds']:.0f} s"]
    for row in summary["rows"]:
        if row.get("status") == "failed":
            lines.append(f"  {row['variant']:<24} FAILED: {row.get('error')}")
        else:
            lines.append(f"  {row['variant']:<24} test acc {_fmt(row.get('test_accuracy'))}  "
                         f"F1 {_fmt(row.get('test_f1'))}  MCC {_fmt(row.get('test_mcc'))}  "
                         f"{_fmt(row.get('seconds'), 0)} s")
    lines += [f"  {k}: {v}" for k, v in summary["files"].items()]
    return "\n".join(lines)


def _one_line(summary: dict) -> str:
    m = summary.get("test_metrics")
    if not m:
        return f"done in {summary.get('seconds', 0):.0f} s (no test split)"
    return (f"test accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}, MCC {m['mcc']:.3f} "
            f"in {summary.get('seconds', 0):.0f} s")


def comparison_table(variants: list[Variant], results: dict[str, dict]) -> pd.DataFrame:
    """One row per variant: size, depth, accuracy by split, test metrics with intervals, time, speed."""
    rows = []
    for variant in variants:
        res = results.get(variant.name, {})
        row: dict[str, Any] = {"variant": variant.name, **variant.params,
                               "backbone": res.get("backbone", variant.cfg.model.backbone)}
        if "error" in res:
            rows.append({**row, "status": "failed", "error": res["error"]})
            continue
        best = res.get("best_epoch_metrics", {})
        test = res.get("test_metrics", {})
        intervals = res.get("test_intervals", {})
        row.update({
            "status": "ok", "freeze": f"{res['freeze']['strategy']}"
            + (f" {res['freeze']['n']}" if res['freeze']['strategy'] in ("last_blocks", "last_layers") else ""),
            "train_images": res.get("train_images"), "total_params": res.get("total_params"),
            "trainable_params": res.get("trainable_params"), "size_mb": res.get("model_size_mb"),
            "depth": res.get("depth"), "image_size": res.get("image_size"),
            "train_accuracy": best.get("train_accuracy"), "val_accuracy": best.get("val_accuracy"),
            "test_images": res.get("test_images")})
        for key in METRICS:
            row[f"val_{key}"] = res.get("val_metrics", {}).get(key)
            row[f"test_{key}"] = test.get(key)
            row[f"test_{key}_low"], row[f"test_{key}_high"] = intervals.get(key) or (None, None)
        row.update({"epochs_run": res.get("epochs_run"), "best_epoch": res.get("best_epoch"),
                    "seconds": res.get("seconds"), "train_images_per_s": res.get("train_images_per_s"),
                    "inference_images_per_s": res.get("inference_images_per_s"), "output_dir": res.get("output_dir")})
        rows.append(row)
        if res.get("test_metrics_without_tags"):  # the same multi-modal model, every tag unknown
            bare = {**row, "variant": f"{variant.name} (no tags)", "inputs": "image (tags unknown)"}
            for key in METRICS:
                bare[f"test_{key}"] = res["test_metrics_without_tags"].get(key)
                bare[f"test_{key}_low"], bare[f"test_{key}_high"] = \
                    res.get("test_intervals_without_tags", {}).get(key) or (None, None)
            rows.append(bare)
    return pd.DataFrame(rows)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, select: str = "mcc") -> str:
    """The comparison as a Markdown table (metrics with their intervals), like the study's tables."""
    cols = ["variant", "backbone", "freeze", "runs", "train images", "params", "size (MB)", "depth", "train acc*",
            "val acc*", f"val {select}†"] \
        + [f"test {m}" for m in ("accuracy", "precision", "recall", "specificity", "F1", "MCC")] \
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
            _fmt(r.get("val_accuracy")), _fmt(r.get(f"val_{select}")),
            ci("accuracy"), ci("precision"), ci("recall"), ci("specificity"), ci("f1"), ci("mcc"),
            _fmt(r.get("seconds"), 0), _fmt(r.get("train_images_per_s"), 1),
            _fmt(r.get("inference_images_per_s"), 1)]) + " |")
    return "\n".join(lines) + "\n"


TITLES = {"single": "Repeated run", "compare": "Backbone comparison", "finetune": "Fine-tuning scenarios",
          "transfer": "Weight transfer", "data_size": "Training data size", "modality": "Image-only vs. multi-modal"}


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
    return (head + f" *Train and validation accuracy at the best epoch (by {cfg.train.monitor}), threshold 0.5. "
            f"†Validation {cfg.experiment.select} at the chosen threshold (mean over runs): it picks the best "
            "variant; test metrics never do. Depth: layers with weights.")


def write_comparison(cfg: RunConfig, table: pd.DataFrame) -> dict[str, str]:
    """comparison.csv / .md / .png, plus the kind's own plot (metric vs depth, learning curve)."""
    out = cfg.output_dir
    kind = cfg.experiment.kind
    files = {"csv": storage.join(out, "comparison.csv"), "markdown": storage.join(out, "comparison.md")}
    storage.write_text(files["csv"], table.to_csv(index=False))
    storage.write_text(files["markdown"], f"# {TITLES[kind]}: {cfg.name}\n\n{caption(cfg)}\n\n"
                       + markdown_table(table, cfg.experiment.select))
    ok = table[table["status"] == "ok"] if "status" in table else table.iloc[0:0]
    if ok.empty:
        return files
    files["plot"] = plots.metric_bars(ok, storage.join(out, "comparison.png"), TITLES[kind])
    if kind == "finetune":
        depth = ok[ok["strategy"].isin(["last_blocks", "last_layers"])]
        if not depth.empty:
            files["depth_plot"] = plots.metric_lines(depth, "n", "strategy", storage.join(out, "finetune_depth.png"),
                                                     "unfrozen blocks / layers (N)", "Metrics vs. unfrozen depth")
    if kind == "data_size":
        files["learning_curve"] = plots.metric_lines(ok, "train_images", None,
                                                     storage.join(out, "learning_curve.png"),
                                                     "training images", "Learning curve")
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
        thresholds = [storage.read_json(storage.join(d, "summary.json"))["threshold"] for d in (image_dir, multi_dir)]
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
