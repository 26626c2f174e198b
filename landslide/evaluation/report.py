"""The Markdown report written next to every evaluation."""

from __future__ import annotations

import math
from typing import Any

from landslide import storage
from landslide.explain.attention_stats import REGIONS
from landslide.models.card import ModelCard

_ROWS = ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "balanced_accuracy", "roc_auc", "pr_auc")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(metrics: dict) -> list[str]:
    """Metric | value | interval rows."""
    ci = metrics.get("intervals", {})
    pct = int(round(metrics.get("confidence", 0.95) * 100))
    lines = [f"| metric | value | {pct}% bootstrap interval |", "|---|---|---|"]
    for key in _ROWS:
        interval = ci.get(key)
        lines.append(f"| {key} | {_fmt(metrics.get(key))} | "
                     f"{f'{interval[0]:.3f} – {interval[1]:.3f}' if interval else 'n/a'} |")
    return lines


def attention_table(attention: dict) -> list[str]:
    """Mean share of heat-map mass per region and outcome (enrichment vs an even map in brackets)."""
    order = [o for o in ("TP", "FP", "FN", "TN", "correct", "errors") if o in attention]
    if not order:
        return []
    lines = ["| region | " + " | ".join(f"{o} (n={attention[o]['n']})" for o in order) + " |",
             "|---|" + "---|" * len(order)]
    for region in REGIONS:
        cells = [f"{attention[o][region]['mean']:.3f} (×{attention[o][region]['enrichment']:.2f})" for o in order]
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return lines


def _interval(values: list[float] | None) -> str:
    return f"{values[0]:+.3f} – {values[1]:+.3f}" if values else "n/a"


def tags_section(tags: dict | None, card: ModelCard, with_tags: dict) -> list[str]:
    """A multi-modal model with and without its tags on the same images, and the training split's leakage
    check."""
    if not tags:
        return []
    without = tags["without_tags"]
    lines = ["", "## Tags (multi-modal)", "",
             f"Tag inputs: {', '.join(tags['coverage']) or 'none'}. Known on this set: "
             + ", ".join(f"{k} {v:.1%}" for k, v in tags["coverage"].items())
             + f"; at least one tag known for {_pct(tags['any_tag_known'].get('landslide'))} of landslide and "
             f"{_pct(tags['any_tag_known'].get('non_landslide'))} of non-landslide images.", "",
             "Without tags = every tag unknown, as in sweeps and requests that send none; same threshold.", "",
             "| metric | with tags | without tags | with − without (paired bootstrap) |", "|---|---|---|---|"]
    for key, diff in tags["with_minus_without"].items():
        mark = " *" if diff["significant"] else ""
        lines.append(f"| {key} | {_fmt(with_tags.get(key))} | {_fmt(without.get(key))} | "
                     f"{diff['difference']:+.3f} [{_interval(diff['interval'])}]{mark} |")
    lines += ["", "\\* the interval excludes 0."]
    leakage = card.tags.leakage if card.tags else None
    if leakage:
        from landslide.evaluation.leakage import leakage_lines

        lines += ["", "### Tag leakage (training split)", "", *leakage_lines(leakage)]
    return lines


def _with_interval(m: dict, key: str) -> str:
    """``value [low – high]`` of metric ``key`` from a metrics dict with ``intervals``."""
    interval = m.get("intervals", {}).get(key)
    return _fmt(m.get(key)) + (f" [{interval[0]:.3f} – {interval[1]:.3f}]" if interval else "")


def region_section(by_region: dict | None) -> list[str]:
    """Metrics per region (``region`` column of the manifest), each with its bootstrap interval."""
    if not by_region:
        return []
    lines = ["", "## By region", "",
             "Each region's chips scored alone, at the same threshold (bootstrap intervals over its chips).", "",
             "| region | images | landslide | accuracy | precision | recall | F1 | MCC | ROC AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for region, m in by_region.items():
        lines.append(f"| {region} | {m['n']} | {m['positives']} | " + " | ".join(
            _with_interval(m, k) for k in ("accuracy", "precision", "recall", "f1", "mcc", "roc_auc")) + " |")
    return lines


def calibration_section(calibration: dict | None, by_region: dict | None) -> list[str]:
    """ECE and Brier score, raw and after the temperature fitted on validation, overall and per region."""
    if not calibration:
        return []
    t = calibration.get("temperature")
    lines = ["", "## Calibration", "",
             "Are the probabilities right as probabilities? Expected calibration error (15 bins) and Brier score, "
             "lower is better" + (f"; calibrated: temperature {t:.3f} fitted on validation (decisions unchanged)."
                                  if t else "; the model card has no fitted temperature."), "",
             "| images | ECE | Brier | ECE calibrated | Brier calibrated |", "|---|---|---|---|---|"]
    rows = [("all", calibration)] + [(r, m["calibration"]) for r, m in (by_region or {}).items()
                                      if m.get("calibration")]
    for name, c in rows:
        cal = c.get("calibrated", {})
        lines.append(f"| {name} | {_fmt(c['raw']['ece'])} | {_fmt(c['raw']['brier'])} | {_fmt(cal.get('ece'))} | "
                     f"{_fmt(cal.get('brier'))} |")
    return lines


def prior_shift_section(metrics: dict) -> list[str]:
    """The threshold adjusted to each set's landslide share estimated without labels (EM), and its scores."""
    rows = [("all", metrics, metrics.get("prior_shift"))] + [
        (r, m, m.get("prior_shift")) for r, m in (metrics.get("by_region") or {}).items()]
    rows = [r for r in rows if r[2]]
    if not rows:
        return []
    lines = ["", "## Prior shift (no labels used)", "",
             "A new region has its own share of landslides. EM on the model's calibrated probabilities estimates it "
             "without labels (Saerens et al. 2002) and moves the threshold accordingly; the labelled share is shown "
             "only to judge the estimate. The method assumes only the share changes (images of each class look "
             "as in training); across sensors that fails and the estimate can run to 0 or 1 (docs/results.md).",
             "",
             "| images | training share | estimated share | labelled share | threshold | F1 | MCC | F1 at the card's "
             "threshold |", "|---|---|---|---|---|---|---|---|"]
    for name, plain, s in rows:
        lines.append(f"| {name} | {s['train_prior']:.3f} | {s['estimated_prior']:.3f} | {s['labelled_prior']:.3f} | "
                     f"{s['threshold']:.3f} | {_fmt(s['f1'])} | {_fmt(s['mcc'])} | {_fmt(plain.get('f1'))} |")
    return lines


def threshold_rules_section(rules: dict | None, chosen: float) -> list[str]:
    """Each threshold rule's validation-chosen threshold applied to these images."""
    if not rules:
        return []
    lines = ["", "## Threshold rules", "",
             f"Each rule chose its threshold on the validation split; the model uses {chosen:.3f}. Test metrics at "
             "each rule's threshold (bootstrap intervals):", "",
             "| rule | threshold | precision | recall | F1 | MCC | accuracy |", "|---|---|---|---|---|---|---|"]
    for rule, m in rules.items():
        lines.append(f"| {rule} | {m['threshold']:.3f} | " + " | ".join(
            _with_interval(m, k) for k in ("precision", "recall", "f1", "mcc", "accuracy")) + " |")
    return lines


def tta_section(tta: dict | None, with_tta: dict) -> list[str]:
    """The model with test-time augmentation against itself without it, on the same images."""
    if not tta:
        return []
    without = tta["without_tta"]
    lines = ["", f"## Test-time augmentation ({tta['mode']}, {tta['views']} views)", "",
             f"Each model at its own validation-chosen threshold (without: {tta['threshold_without_tta']:.3f}).", "",
             "| metric | with TTA | without TTA | with − without (paired bootstrap) |", "|---|---|---|---|"]
    for key, diff in tta["tta_minus_without"].items():
        mark = " *" if diff["significant"] else ""
        lines.append(f"| {key} | {_fmt(with_tta.get(key))} | {_fmt(without.get(key))} | "
                     f"{diff['difference']:+.3f} [{_interval(diff['interval'])}]{mark} |")
    return lines + ["", "\\* the interval excludes 0."]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def size_section(size: dict | None) -> list[str]:
    """The size head's own metrics."""
    if not size:
        return []
    ci = size.get("intervals", {})

    def with_ci(key: str) -> str:
        return _fmt(size.get(key)) + (f" ({ci[key][0]:.3f} – {ci[key][1]:.3f})" if key in ci else "")

    lines = ["", f"## Size head ({size['column']})", "",
             f"{size['n']} landslide images with a known size class ({size['landslide_images_without_size']} "
             f"without one are not scored). Accuracy {with_ci('accuracy')}, macro F1 {with_ci('macro_f1')}; "
             f"always predicting the most common class would score accuracy "
             f"{_fmt(size.get('majority_baseline_accuracy'))}.", ""]
    if size.get("per_class"):
        classes = size["classes"]
        lines += ["| true \\ predicted | " + " | ".join(classes) + " | recall | support |",
                  "|---|" + "---|" * (len(classes) + 2)]
        for name, row in zip(classes, size["confusion"]):
            pc = size["per_class"][name]
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {_fmt(pc['recall'])} | "
                         f"{pc['support']} |")
    return lines


def size_matched_lines(report: dict | None) -> list[str]:
    """Report lines for ``metrics['size_matched']`` (landslide.evaluation.evaluate.size_matched_report)."""
    if not report:
        return []
    parts = []
    for name, r in [("all chips", report.get("all")), *((f"region {k}", v)
                                                       for k, v in (report.get("regions") or {}).items())]:
        if r:
            ci = f" [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]" if r.get("interval") else ""
            parts.append(f"{name} {r['model']:.3f}{ci} (unmatched {r['model_unmatched']:.3f}; size alone "
                         f"{r['size_alone']:.3f} matched, {r['size_alone_unmatched']:.3f} unmatched; "
                         f"{r['bins']} size bins)")
    if not parts:
        return []
    return ["- **size-matched ROC AUC** (landslide against landslide-free chips of about the same size, so "
            "chip size cannot help): " + "; ".join(parts)]


def write_report(uri: str, title: str, metrics: dict, card: ModelCard, figures: dict[str, str],
                 galleries: dict[str, dict], history: list[dict] | None, extra: dict[str, Any]) -> None:
    """Write report.md."""
    c = metrics["confusion"]
    lines = [f"# {title}", ""]
    for key, value in extra.items():
        lines.append(f"- **{key}**: {value}")
    lines += [f"- **model**: {card.name} (backbone `{card.backbone}`, input {card.input_size} px, "
              f"weights from {card.pretrained.get('source', 'n/a')}, version {card.version})",
              f"- **images**: {metrics['n']} ({metrics['positives']} landslide, {metrics['negatives']} non-landslide); "
              f"unreadable: {len(metrics.get('unreadable_images', []))}",
              f"- **threshold**: {metrics['threshold']:.3f} (chosen on validation data; stored in the model card)",
              *([f"- **GSD**: {metrics['gsd']['note']}"] if (metrics.get("gsd") or {}).get("note") else
                [f"- **GSD**: {metrics['gsd']['data_m']:g} m/px (model trained at {metrics['gsd']['model_m']:g})"]
                if metrics.get("gsd") else []),
              *([f"- **chip size**: {metrics['size_neutral']['note']}"] if metrics.get("size_neutral") else []),
              *size_matched_lines(metrics.get("size_matched")),
              *([f"- **acquisition confounds (training split)**: {confounds['verdict']}"]
                if (confounds := (card.training or {}).get("confounds")) else []),
              "", "## Metrics", "", *metrics_table(metrics), "",
              f"Confusion matrix: TP={c['tp']} FP={c['fp']} FN={c['fn']} TN={c['tn']}", ""]
    for key, caption in (("confusion", "Confusion matrix"), ("roc", "ROC curve"), ("pr", "Precision-recall curve"),
                         ("training", "Training curves")):
        if key in figures:
            lines.append(f"![{caption}]({figures[key]})")
    if history:
        lines += ["", "## Training history", "", "| epoch | lr | train loss | train acc | val loss | val acc | val F1 |",
                  "|---|---|---|---|---|---|---|"]
        for h in history:
            lines.append(f"| {h['epoch'] + 1} | {h['lr']:.2e} | {_fmt(h.get('train_loss'))} | "
                         f"{_fmt(h.get('train_accuracy'))} | {_fmt(h.get('val_loss'))} | "
                         f"{_fmt(h.get('val_accuracy'))} | {_fmt(h.get('val_f1'))} |")
    attention = metrics.get("attention") or {}
    if attention:
        lines += ["", f"## Where the model looks ({attention.get('method', 'gradcam')})", "",
                  "Share of heat-map mass per region of a 3×3 grid (corners and centre are cells; top/bottom/left/"
                  "right are border strips). An even map gives 0.111 per cell and 0.333 per strip; ×N is the "
                  "enrichment over that. Compare errors with correct predictions, e.g. `top_right`.", "",
                  *attention_table(attention)]
    lines += region_section(metrics.get("by_region"))
    lines += threshold_rules_section(metrics.get("threshold_rules"), metrics["threshold"])
    lines += calibration_section(metrics.get("calibration"), metrics.get("by_region"))
    lines += prior_shift_section(metrics)
    lines += tta_section(metrics.get("tta"), metrics)
    lines += tags_section(metrics.get("tags"), card, metrics)
    lines += size_section(metrics.get("size"))
    if galleries:
        lines += ["", "## Grad-CAM galleries", ""]
        for name, g in galleries.items():
            sheet = f"![{name}](gallery/{g['sheet']})" if g.get("sheet") else "(none)"
            lines.append(f"- **{name}**: {g['count']} images, {g['shown']} shown  \n  {sheet}")
    storage.write_text(uri, "\n".join(lines) + "\n")
