"""The study report: every part's comparison, the selected model against the baseline and the targets, the
effect of test-time augmentation, where the selected model looks when it is wrong (Grad-CAM statistics) and
where its errors are (by manifest columns such as scene or mask coverage).

Written by :func:`landslide.experiments.runner.run_experiment` for ``experiment.kind: study`` into the study's
``output_dir``: ``study.md``, ``study.json``, ``attention_by_outcome.png`` and ``best_model/``.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from landslide import storage
from landslide.config import RunConfig
from landslide.data import manifest
from landslide.errors import DataError
from landslide.evaluation import breakdown, plots
from landslide.evaluation.metrics import paired_pooled_difference
from landslide.explain import attention_stats
from landslide.experiments import repeats
from landslide.experiments.plan import Variant
from landslide.experiments.report import caption, markdown_table

log = logging.getLogger(__name__)


def _fmt(value: Any, low: Any = None, high: Any = None) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.3f}" + (f" [{low:.3f}–{high:.3f}]" if low is not None and not pd.isna(low) else "")


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "–"


def combined_table(parts: dict[str, dict]) -> pd.DataFrame:
    """All parts' variant rows, named ``part/variant``."""
    frames = [p["table"].assign(part=name, variant=name + "/" + p["table"]["variant"].astype(str))
              for name, p in parts.items() if not p["table"].empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tta_effect(cfg: RunConfig, runs: list[Variant], results: dict[str, dict]) -> dict | None:
    """With and without test-time augmentation for one variant: pooled out-of-fold (group bootstrap) when
    cross-validated, else the mean of the runs' own paired differences."""
    ok = [results[v.name] for v in runs if "error" not in results.get(v.name, {"error": 1})]
    if not ok or not ok[0].get("tta"):
        return None
    ev = cfg.eval
    pooled = repeats.pooled_table(runs, results)
    if cfg.experiment.repeats and cfg.experiment.repeats.folds and "prediction_without_tta" in pooled:
        diff = paired_pooled_difference(pooled["target"], pooled["prediction"], pooled["prediction_without_tta"],
                                        pooled["group"], ev.bootstrap, ev.confidence, cfg.train.seed)
        return {"mode": ok[0]["tta"], "estimate": "out-of-fold", "images": int(len(pooled)), "difference": diff}
    keys = ok[0]["tta_minus_without"].keys()
    diff = {k: {"difference": float(pd.Series([r["tta_minus_without"][k]["difference"] for r in ok]).mean()),
                "interval": ok[0]["tta_minus_without"][k]["interval"] if len(ok) == 1 else None,
                "significant": bool(len(ok) == 1 and ok[0]["tta_minus_without"][k]["significant"])} for k in keys}
    return {"mode": ok[0]["tta"], "estimate": "mean of runs", "images": int(sum(r.get("test_images", 0) for r in ok)),
            "difference": diff}


def _targets(best: pd.Series, targets: dict[str, float], nested: dict | None) -> dict[str, dict]:
    out = {}
    for key, goal in targets.items():
        value, low = best.get(f"test_{key}"), best.get(f"test_{key}_low")
        out[key] = {"target": goal, "estimate": None if pd.isna(value) else float(value),
                    "lower_bound": None if low is None or pd.isna(low) else float(low),
                    "met": bool(value is not None and not pd.isna(value) and value >= goal),
                    "met_at_lower_bound": bool(low is not None and not pd.isna(low) and low >= goal)}
        if nested and nested["test"].get(key) is not None:
            out[key]["selection_aware"] = nested["test"][key]
            out[key]["met_selection_aware"] = bool(nested["test"][key] >= goal)
    return out


def write_study(cfg: RunConfig, parts: dict[str, dict], variants: list[Variant], results: dict[str, dict]
                ) -> dict[str, str]:
    """study.md / study.json / attention plot / best_model for a finished (or partly failed) study; ``parts``:
    each part's ``cfg`` and its ``write_results`` (table, files)."""
    out, exp, ev = cfg.output_dir, cfg.experiment, cfg.eval
    files = {"markdown": storage.join(out, "study.md"), "json": storage.join(out, "study.json")}
    table = combined_table(parts)
    by_variant = repeats.groups_of_runs(variants)
    best_row = repeats.select_best(table, exp.select, variants)
    best = attention = errors = None
    tta: dict[str, dict] = {}
    if best_row is not None:
        best = repeats.export_best(out, best_row, by_variant[best_row["variant"]], results, exp.select)
        files["best_model"] = best["model_dir"]
        if exp.error_breakdown:
            errors = _error_breakdown(cfg, repeats.pooled_table(by_variant[best_row["variant"]], results))
        shares = repeats.pooled_table(by_variant[best_row["variant"]], results, "attention_per_image.csv")
        if not shares.empty:
            attention = attention_stats.summarise(shares, ev.bootstrap, ev.confidence, cfg.train.seed)
            files["attention_plot"] = plots.attention_bars(attention, storage.join(out, "attention_by_outcome.png"))
    for part in exp.parts:
        for name, runs in repeats.groups_of_runs(
                [v for v in variants if v.part == part.name]).items():
            effect = tta_effect(parts[part.name]["cfg"], runs, results)
            if effect:
                tta[name] = effect
    nested = repeats.selection_estimate(cfg, variants, results, exp.select)
    baseline = table[(table.get("backbone") == "baseline_cnn") & (table.get("status") == "ok")] \
        if not table.empty else table
    summary = {"name": cfg.name, "data": cfg.data.train, "split": cfg.data.split.model_dump(mode="json"),
               "repeats": exp.repeats.model_dump(mode="json") if exp.repeats else None, "select": exp.select,
               "tta": ev.tta, "best": best, "selection_estimate": nested,
               "targets": _targets(best_row, exp.targets, nested) if best_row is not None else {},
               "baseline": baseline.to_dict(orient="records") if len(baseline) else [],
               "tta_effect": tta, "attention": attention, "error_breakdown": errors,
               "parts": {name: {"files": p["files"], "rows": len(p["table"])} for name, p in parts.items()}}
    storage.write_json(files["json"], _jsonable(summary))
    storage.write_text(files["markdown"], _markdown(cfg, parts, table, best_row, summary))
    return files


def _error_breakdown(cfg: RunConfig, predictions: pd.DataFrame) -> dict | None:
    """The selected model's pooled test outcomes by the manifest columns of ``experiment.error_breakdown``."""
    if predictions.empty:
        return None
    try:
        frame = manifest.load(cfg.data.train, check_files=False).frame
    except DataError as exc:  # the report still gets written
        return {c: {"error": str(exc)} for c in cfg.experiment.error_breakdown}
    return breakdown.error_breakdown(predictions, frame, cfg.experiment.error_breakdown)


def _jsonable(obj: Any) -> Any:
    from landslide.evaluation.evaluate import _finite

    return _finite(obj)


def _markdown(cfg: RunConfig, parts: dict[str, dict], table: pd.DataFrame, best_row: pd.Series | None,
              summary: dict) -> str:
    exp, ev, tr = cfg.experiment, cfg.eval, cfg.train
    rep = exp.repeats
    lines = [f"# Study: {cfg.name}", "",
             f"Data `{cfg.data.train}`; split `{cfg.data.split.method}`"
             + (f", {rep.folds}-fold cross-validation" if rep and rep.folds else "")
             + (f", seeds {rep.seeds}" if rep and rep.seeds else "")
             + f"; validation {cfg.data.split.val_fraction:.0%} of the data from the training folds' groups. Budget "
             f"per run: {tr.epochs} epochs, batch {tr.batch_size}, Adam lr {tr.lr:g} with ReduceLROnPlateau "
             f"(factor {tr.plateau_factor}, patience {tr.plateau_patience}), monitor {tr.monitor}. Threshold: "
             f"{ev.threshold} on validation. Test-time augmentation: {ev.tta}. The selected model is the variant "
             f"with the best mean validation {exp.select} among those trained on the whole training split (data-"
             "size fractions and scene subsets are ablations); test data never chooses anything.", ""]
    if best_row is not None:
        b = best_row
        lines += ["## Selected model", "",
                  f"**{b['variant']}** ({b['backbone']}, {b.get('freeze', '')}), {int(b.get('runs', 1))} run(s), "
                  f"test estimate: {b.get('estimate', 'single run')}. Exported with its card to `best_model/` "
                  f"(run {summary['best']['run']}), ready for `landslide evaluate`, sweeps and the endpoint.", "",
                  "| model | runs | val " + exp.select + " | test accuracy | test F1 | test MCC | test ROC AUC |",
                  "|---|---|---|---|---|---|---|"]
        rows = [b] + [r for _, r in table.iterrows() if r.get("backbone") == "baseline_cnn" and r.get("status") == "ok"
                      and r["variant"] != b["variant"]]
        for r in rows:
            lines.append(f"| {r['variant']} | {int(r.get('runs', 1))} | {_fmt(r.get(f'val_{exp.select}'))} | "
                         + " | ".join(_fmt(r.get(f"test_{k}"), r.get(f"test_{k}_low"), r.get(f"test_{k}_high"))
                                      for k in ("accuracy", "f1", "mcc", "roc_auc")) + " |")
        nested = summary["selection_estimate"]
        if nested:
            val = sum(nested["validation"].values()) / len(nested["validation"])
            lines.append(f"| the selection procedure (nested)‡ | {len(nested['chosen'])} | {_fmt(val)} | "
                         + " | ".join(_fmt(nested["test"][k], *(nested["test_intervals"].get(k) or (None, None)))
                                      for k in ("accuracy", "f1", "mcc", "roc_auc")) + " |")
            counts = pd.Series(list(nested["chosen"].values())).value_counts()
            lines += ["", f"‡ In each fold, the candidate with the best validation {exp.select} of that fold, "
                      "tested on that fold: an estimate of the whole procedure (train every variant, keep the best "
                      "on validation) that no fold's test chips influence. The selected variant's row answers how "
                      "good that variant is; this row answers how good the procedure that picked it is, and the "
                      "choice on noisy validation data is part of it. Chosen per fold: "
                      + ", ".join(f"{name} ×{n}" for name, n in counts.items()) + "."]
        if summary["targets"]:
            lines += ["", "| target | goal | estimate | lower bound | met | met at the lower bound | met by the "
                      "selection procedure‡ |", "|---|---|---|---|---|---|---|"]
            for key, t in summary["targets"].items():
                aware = (f"{'yes' if t['met_selection_aware'] else 'no'} ({_fmt(t['selection_aware'])})"
                         if "selection_aware" in t else "–")
                lines.append(f"| {key} | {t['target']:.2f} | {_fmt(t['estimate'])} | {_fmt(t['lower_bound'])} | "
                             f"{'yes' if t['met'] else 'no'} | {'yes' if t['met_at_lower_bound'] else 'no'} | "
                             f"{aware} |")
        lines.append("")
    for name, part in parts.items():
        pcfg = part["cfg"]
        lines += [f"## Part `{name}` ({pcfg.experiment.kind})", "", caption(pcfg), "",
                  markdown_table(part["table"], exp.select)]
        for key, uri in part["files"].items():
            if uri.endswith(".png"):
                lines.append(f"![{name} {key}]({name}/{uri.rsplit('/', 1)[-1]})")
        lines.append("")
    if summary["tta_effect"]:
        lines += [f"## Test-time augmentation ({ev.tta})", "",
                  "With minus without test-time augmentation, the same models and images, each at its own "
                  f"validation-chosen threshold; {ev.confidence:.0%} paired (group) bootstrap intervals, * = the "
                  "interval excludes 0.", "", "| variant | estimate | accuracy | F1 | MCC |", "|---|---|---|---|---|"]
        for name, eff in summary["tta_effect"].items():
            d = eff["difference"]
            lines.append(f"| {name} | {eff['estimate']} | " + " | ".join(
                f"{d[k]['difference']:+.3f} {_interval(d[k]['interval'])}{' *' if d[k]['significant'] else ''}"
                for k in ("accuracy", "f1", "mcc")) + " |")
        lines.append("")
    att = summary["attention"]
    if att:
        lines += ["## Where the selected model looks (Grad-CAM)", "",
                  f"Share of heat-map mass per region of a 3×3 grid over {att['images']} test images of all its "
                  "runs (corners and centre are cells; `corners` = the four corner cells, `border` = all but the "
                  f"centre). An even map gives {1 / 9:.3f} per cell, {4 / 9:.3f} to the corners and {8 / 9:.3f} to "
                  f"the border. {ev.confidence:.0%} group-bootstrap intervals.", "",
                  "| outcome | n | " + " | ".join(attention_stats.SUMMARY_REGIONS) + " |",
                  "|---|---|" + "---|" * len(attention_stats.SUMMARY_REGIONS)]
        for name, entry in att["outcomes"].items():
            lines.append(f"| {name} | {entry['n']} | " + " | ".join(
                _fmt(entry[r]["mean"], *(entry[r]["interval"] or (None, None)))
                for r in attention_stats.SUMMARY_REGIONS) + " |")
        if att["errors_minus_correct"]:
            d = att["errors_minus_correct"]
            lines += ["", "Errors (FP + FN) minus correct predictions: "
                      + ", ".join(f"{r} {d[r]['difference']:+.3f} {_interval(d[r]['interval'])}"
                                  f"{' *' if d[r]['significant'] else ''}" for r in attention_stats.SUMMARY_REGIONS)
                      + ". The study's observation that errors attend to the top-right corner holds here only if "
                      "`top_right` is marked *.", "", "![attention by outcome](attention_by_outcome.png)"]
        lines += ["", "Galleries per outcome (TP/FP/FN/TN) are in each run's `eval/gallery/`."]
    if summary["error_breakdown"]:
        lines += ["", "## Where the selected model errs", "",
                  "Its pooled test outcomes by manifest column (numeric columns in quantile bins; a value shared "
                  "by many chips, such as a mask fraction of 0, is a bin of its own)."]
        for column, entry in summary["error_breakdown"].items():
            lines += ["", f"**{column}**" + (f": {entry['error']}" if "error" in entry else ""), ""]
            if "error" in entry:
                continue
            lines += [f"| {column} | n | landslide | non-landslide | errors | error rate | FN | FP | recall | "
                      "specificity |", "|---|---|---|---|---|---|---|---|---|---|"]
            for r in entry["rows"]:
                lines.append(f"| {r['value']} | {r['n']} | {r['landslide']} | {r['non_landslide']} | {r['errors']} | "
                             f"{_fmt(r['error_rate'])} | {r['FN']} | {r['FP']} | {_fmt(r['recall'])} | "
                             f"{_fmt(r['specificity'])} |")
    return "\n".join(lines) + "\n"
