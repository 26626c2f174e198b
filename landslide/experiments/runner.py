"""Running experiments: several training runs planned from one config (:mod:`~landslide.experiments.plan`),
run by any runner, compared in one table (:mod:`~landslide.experiments.report`).

``repeats`` runs every variant once per cross-validation fold and/or seed (``<variant>/fold-i``); the
comparison then aggregates the runs (:mod:`landslide.experiments.repeats`) and the best variant by validation metric is
exported to ``output_dir/best_model``.

Each variant is a plain :class:`RunConfig` with its own folder ``output_dir/variants/<name>``; the runner is
``run_training`` locally and a Ray TorchTrainer in ``ray_jobs.train``, so both produce the same files. A
variant whose ``summary.json`` exists is finished and never re-run or overwritten, which makes a re-submitted
experiment resume where it stopped. A failing variant is recorded and the others still run.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import pandas as pd

from landslide import storage
from landslide.config import RunConfig, dump_config
from landslide.errors import LandslideError, StorageError
from landslide.experiments import repeats
from landslide.experiments.plan import Variant, part_config, plan, repeat_tags
from landslide.experiments.regions import write_region_matrix
from landslide.experiments.thresholds import write_threshold_rules
from landslide.experiments.report import one_line, comparison_table, write_comparison, write_modality
from landslide.experiments.study import combined_table, write_study

log = logging.getLogger(__name__)
Runner = Callable[[RunConfig], dict]


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
        report(f"{head}: {one_line(results[variant.name])}")
    if cfg.experiment.kind == "study":
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
    runs = comparison_table(variants, results)
    files: dict[str, str] = {}
    if repeat_tags(cfg):
        files["runs_csv"] = storage.join(cfg.output_dir, "runs.csv")
        storage.write_text(files["runs_csv"], runs.to_csv(index=False))
        table = repeats.aggregate_table(cfg, variants, results)
        files.update(write_threshold_rules(cfg, variants, results))
    else:
        table = runs.assign(runs=(runs["status"] == "ok").astype(int)) if "status" in runs else runs
    files.update(write_comparison(cfg, table))
    if cfg.experiment.kind == "modality" and not repeat_tags(cfg) and not any("error" in r for r in results.values()):
        files.update(write_modality(cfg, variants))
    if cfg.experiment.kind == "regions":
        files.update(write_region_matrix(cfg, variants, results))
    best = None
    if export and len(variants) > 1:
        row = repeats.select_best(table, cfg.experiment.select, variants)
        if row is not None:
            best = repeats.export_best(cfg.output_dir, row, repeats.groups_of_runs(variants)[row["variant"]],
                                       results, cfg.experiment.select)
            files["best_model"] = best["model_dir"]
    return {"table": table, "runs": runs, "files": files, "best": best}
