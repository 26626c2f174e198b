"""Evaluate a model on a labelled set: predictions, metrics with intervals, plots, Grad-CAM analysis, report."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from landslide import storage
from landslide.config import EvalConfig
from landslide.data.dataset import ChipDataset, ChipView, collate_skip_bad
from landslide.data.manifest import Manifest
from landslide.data.tags import fraction_known, size_targets
from landslide.data.gsd import chip_size, same_scale
from landslide.data.transforms import denormalize
from landslide.evaluation import plots
from landslide.evaluation.confounds import size_matched_auc
from landslide.evaluation.metrics import (apply_temperature, calibration_metrics, evaluate_predictions,
                                          multiclass_metrics, outcome, paired_difference, prior_shift_threshold)
from landslide.evaluation.report import write_report
from landslide.explain import attention_stats
from landslide.explain.gallery import write_galleries
from landslide.explain.gradcam import CamExplainer, overlay
from landslide.models.card import ModelCard
from landslide.models.classifier import LandslideClassifier
from landslide.models.tta import VIEWS as TTA_VIEWS
from landslide.inference.batch import predict_loader
from landslide.inference.transform import eval_transform

log = logging.getLogger(__name__)
_RULE_KEYS = ("f1", "mcc", "precision", "recall", "accuracy", "intervals")
"""What an alternative threshold is reported with (threshold rules, prior shift)."""


def predict_manifest(model: LandslideClassifier, card: ModelCard, manifest: Manifest, batch_size: int = 32,
                     device: torch.device | str = "cpu", num_workers: int = 0, max_pixels: int = 64_000_000,
                     progress: bool = False, without_tags: bool = False,
                     tta: str = "none", view: ChipView | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Probability of landslide for every readable image; unreadable ones are returned separately. A
    multi-modal model reads the manifest's tag columns (``without_tags``: every tag unknown); ``tta``
    averages over flipped/rotated views (landslide.models.tta); a ``view`` changes each chip first (GSD
    matching, size-neutral squares: :class:`landslide.data.dataset.ChipView`)."""
    dataset = ChipDataset(manifest, eval_transform(card), max_pixels=max_pixels, schema=model.tag_schema,
                          without_tags=without_tags, view=view)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_skip_bad)
    device = torch.device(device)
    idx, _, probs, errors = predict_loader(model.to(device), loader, device, progress=progress, tta=tta)
    frame = pd.DataFrame({"index": idx.astype(int), "uri": [dataset.uris[i] for i in idx],
                          "target": [dataset.targets[i] for i in idx], "probability": probs.astype(float)})
    return frame, errors


def explain_predictions(model: LandslideClassifier, card: ModelCard, manifest: Manifest, preds: pd.DataFrame,
                        threshold: float, method: str, max_images: int, batch_size: int = 16,
                        device: torch.device | str = "cpu", seed: int = 0, view: ChipView | None = None) -> list[dict]:
    """Grad-CAM for up to ``max_images`` predictions (all errors first, then a seeded sample of the rest)."""
    if max_images <= 0 or preds.empty:
        return []
    preds = preds.assign(pred=(preds["probability"] >= threshold).astype(int))
    wrong = preds[preds["pred"] != preds["target"]]
    right = preds[preds["pred"] == preds["target"]].sample(frac=1.0, random_state=seed)
    chosen = pd.concat([wrong, right]).head(max_images)
    dataset = ChipDataset(manifest, eval_transform(card), schema=model.tag_schema, view=view)
    loader = DataLoader(Subset(dataset, chosen["index"].tolist()), batch_size=batch_size,
                        collate_fn=collate_skip_bad)
    lookup = chosen.set_index("index")
    explainer = CamExplainer(model.to(device), method)
    norm = card.normalization
    items = []
    try:
        for batch in loader:
            if batch["image"] is None:
                continue
            images = batch["image"].to(device)
            indices = batch["index"].tolist()
            preds_b = [int(lookup.loc[i, "pred"]) for i in indices]
            cams = explainer(images, classes=preds_b, tags=batch.get("tags"))
            for img, cam, i, pred in zip(images, cams, indices, preds_b):
                row = lookup.loc[i]
                items.append({
                    "uri": row["uri"], "probability": float(row["probability"]), "target": int(row["target"]),
                    "outcome": outcome(int(row["target"]), pred), "shares": attention_stats.region_shares(cam),
                    "overlay": overlay(denormalize(img, norm.mean, norm.std), cam)})
    finally:
        explainer.close()
    return items


def evaluate_without_tags(model: LandslideClassifier, card: ModelCard, manifest: Manifest, preds: pd.DataFrame,
                          threshold: float, cfg: EvalConfig, out_dir: str, device: torch.device | str = "cpu",
                          batch_size: int = 32, num_workers: int = 0, seed: int = 0,
                          view: ChipView | None = None) -> dict:
    """A multi-modal model on the same images with every tag unknown (as sweeps and most requests see it):
    metrics with intervals, the paired difference with tags minus without, tag coverage of the set, and
    ``predictions_without_tags.csv``."""
    started = time.perf_counter()
    bare, _ = predict_manifest(model, card, manifest, batch_size, device, num_workers, without_tags=True,
                               view=view)
    seconds = time.perf_counter() - started
    both = preds[["index", "target", "probability"]].merge(
        bare[["index", "probability"]].rename(columns={"probability": "probability_without_tags"}), on="index")
    y = both["target"].to_numpy()
    p_with, p_without = both["probability"].to_numpy(), both["probability_without_tags"].to_numpy()
    without = evaluate_predictions(y, p_without, threshold, cfg.bootstrap, cfg.confidence, seed)
    without["images_per_s"] = len(bare) / seconds if seconds > 0 else None
    storage.write_text(storage.join(out_dir, "predictions_without_tags.csv"),
                       bare.drop(columns="index").assign(prediction=(bare["probability"] >= threshold).astype(int))
                       .to_csv(index=False))
    known = model.tag_schema.known(manifest.frame)
    any_known = np.any(np.stack(list(known.values())), axis=0) if known else np.zeros(len(manifest), bool)
    target = manifest.frame["target"].to_numpy()
    return {"without_tags": without,
            "with_minus_without": paired_difference(y, p_with, threshold, p_without, threshold, cfg.bootstrap,
                                                    cfg.confidence, seed),
            "coverage": fraction_known(known),
            "any_tag_known": {"landslide": float(any_known[target == 1].mean()) if (target == 1).any() else None,
                              "non_landslide": float(any_known[target == 0].mean()) if (target == 0).any()
                              else None}}


@torch.no_grad()
def evaluate_size_head(model: LandslideClassifier, card: ModelCard, manifest: Manifest, cfg: EvalConfig,
                       device: torch.device | str = "cpu", batch_size: int = 32, num_workers: int = 0,
                       seed: int = 0, view: ChipView | None = None) -> dict:
    """The size head on the landslide images whose size class is known: accuracy, macro F1 (intervals),
    per-class scores, confusion matrix and the majority-class baseline."""
    head = card.size_head
    classes = head.classes
    sizes = size_targets(manifest.frame, head.column, classes)
    rows = np.flatnonzero(sizes >= 0)
    dataset = ChipDataset(manifest, eval_transform(card), schema=model.tag_schema, view=view)
    loader = DataLoader(Subset(dataset, rows.tolist()), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_skip_bad)
    device = torch.device(device)
    model.to(device).eval()
    ys, preds = [], []
    for batch in loader:
        if batch["image"] is None:
            continue
        tags = batch.get("tags")
        _, size_logits = model(batch["image"].to(device), tags=None if tags is None else tags.to(device),
                               with_size=True)
        preds.append(size_logits.argmax(1).cpu().numpy())
        ys.append(sizes[batch["index"].numpy()])
    y = np.concatenate(ys) if ys else np.zeros(0, int)
    pred = np.concatenate(preds) if preds else np.zeros(0, int)
    out = multiclass_metrics(y, pred, classes, cfg.bootstrap, cfg.confidence, seed)
    out["column"] = head.column
    out["landslide_images_without_size"] = int(((manifest.frame["target"] == 1).to_numpy() & (sizes < 0)).sum())
    return out


def _without_tta(model: LandslideClassifier, card: ModelCard, manifest: Manifest, preds: pd.DataFrame, cfg: EvalConfig,
                 metrics: dict, device, batch_size: int, num_workers: int, seed: int,
                 view: ChipView | None = None) -> pd.DataFrame:
    """The measured effect of test-time augmentation: the same model without it (at the threshold chosen on
    validation without it), and the paired difference with it minus without, into ``metrics['tta']``."""
    mode, threshold = card.tta, card.threshold
    plain_threshold = card.threshold_for("none")
    plain, _ = predict_manifest(model, card, manifest, batch_size, device, num_workers, view=view)
    both = preds.merge(plain[["index", "probability"]].rename(columns={"probability": "probability_without_tta"}),
                       on="index")
    y, p, q = both["target"].to_numpy(), both["probability"].to_numpy(), both["probability_without_tta"].to_numpy()
    metrics["tta"] = {"mode": mode, "views": TTA_VIEWS[mode], "threshold_without_tta": plain_threshold,
                      "without_tta": evaluate_predictions(y, q, plain_threshold, cfg.bootstrap, cfg.confidence, seed),
                      "tta_minus_without": paired_difference(y, p, threshold, q, plain_threshold, cfg.bootstrap,
                                                             cfg.confidence, seed)}
    return both.assign(prediction_without_tta=(q >= plain_threshold).astype(int))


def gsd_report(manifest: Manifest, card: ModelCard, match_gsd: float | None = None) -> dict:
    """Ground sampling distance of the evaluated chips (median ``gsd_m``, m/px) beside the model's training
    chips' (``card.gsd_m``) and the input GSD the model saw them at (``card.input_gsd``), with a note when either
    is unknown or they differ by more than 25 %. With ``match_gsd`` (m/px) it records how many chips were
    resampled to it and how many could not be (no ``gsd_m``)."""
    data = manifest.median_gsd()
    note = None
    if data is None or card.gsd_m is None:
        note = ("GSD unknown for " + " and ".join(w for w, v in (("the evaluated chips (no gsd_m column)", data),
                                                               ("the model's training chips", card.gsd_m))
                                                 if v is None) + "; inputs are not matched to the model's scale")
    elif not same_scale(data, card.gsd_m):
        note = (f"the evaluated chips' GSD ({data:g} m/px) differs from the training chips' ({card.gsd_m:g} m/px) "
                f"by a factor {data / card.gsd_m:.2f}: objects appear at another scale")
    out = {"data_m": data, "model_m": card.gsd_m, "model_input": card.input_gsd, "note": note}
    if match_gsd:
        known = int((manifest.frame["gsd_m"] > 0).sum()) if "gsd_m" in manifest.frame else 0
        out["matched"] = {"input_gsd_m": match_gsd, "resampled": known, "as_is": len(manifest) - known}
        own = (card.input_gsd or {}).get("median_m")
        target = (f"the model's input GSD {match_gsd:g} m/px" if own and math.isclose(own, match_gsd)
                  else f"{match_gsd:g} m/px as asked (the model's input GSD: "
                       + (f"{own:g} m/px)" if own else "not recorded)"))
        out["note"] = (f"chips resampled to {target} ({known} of {len(manifest)}"
                       + (f"; {len(manifest) - known} without gsd_m scored as they are)" if known < len(manifest)
                          else ")"))
    return out


def chip_sides(manifest: Manifest, rows: np.ndarray) -> np.ndarray:
    """Side in pixels (geometric mean of width and height) of the chips at ``rows`` of ``manifest``: from its
    ``width``/``height`` columns where given, else from each image's header; NaN where unknown."""
    sizes = [chip_size(manifest.frame, i) for i in rows]
    return np.array([math.sqrt(s[0] * s[1]) if s else np.nan for s in sizes], dtype=float)


def size_matched_report(manifest: Manifest, preds: pd.DataFrame, cfg: EvalConfig, seed: int = 0) -> dict | None:
    """The size-matched ROC AUC (:func:`landslide.evaluation.confounds.size_matched_auc`) of these predictions,
    for all chips and per region (chip sizes differ between regions, so pooled bins would mix them); None
    when every chip has the same size."""
    side = chip_sides(manifest, preds["index"].to_numpy())
    y, p = preds["target"].to_numpy(), preds["probability"].to_numpy()
    out = {"all": size_matched_auc(y, p, side, n_boot=cfg.bootstrap, confidence=cfg.confidence, seed=seed)}
    if "region" in preds.columns:
        regions = preds["region"].to_numpy()
        out["regions"] = {str(r): size_matched_auc(y[regions == r], p[regions == r], side[regions == r],
                                                   n_boot=cfg.bootstrap, confidence=cfg.confidence, seed=seed)
                          for r in sorted(set(regions))}
    if out["all"] is None and not any((out.get("regions") or {}).values()):
        return None
    return out


def size_neutral_report(manifest: Manifest, square_px: int) -> dict:
    """What a size-neutral evaluation did (``ChipView.square_px``), for metrics.json and the report."""
    return {"square_px": square_px, "images": len(manifest),
            "note": (f"size-neutral: every chip shown as the same {square_px} x {square_px}-px window at its own "
                     "resolution (its centre, mirrored where the chip is smaller) before the model's resize, so "
                     "chip width, height and aspect ratio carry no information; compare with the same evaluation "
                     "without --size-neutral")}


def calibration_report(y: np.ndarray, p: np.ndarray, card: ModelCard) -> dict:
    """ECE and Brier score of the probabilities as the model gives them (``raw``) and, when the card has a
    temperature fitted on validation, after temperature scaling (``calibrated``)."""
    out = {"raw": calibration_metrics(y, p)}
    if card.calibration and card.calibration.get("temperature"):
        t = float(card.calibration["temperature"])
        out.update({"temperature": t, "calibrated": calibration_metrics(y, apply_temperature(p, t))})
    return out


def prior_shift_report(y: np.ndarray, p: np.ndarray, threshold: float, card: ModelCard, cfg: EvalConfig,
                       seed: int = 0) -> dict | None:
    """What the threshold would be, and score, if adjusted to these images' landslide share as estimated *without
    labels* by EM (:func:`landslide.evaluation.metrics.estimate_prior`, on probabilities calibrated with the
    card's temperature). The labelled share is reported beside the estimate only to judge it. None when the
    card does not record its training split."""
    pi0 = card.train_prior
    if pi0 is None or not len(y):
        return None
    prior, raw = prior_shift_threshold(p, threshold, pi0, card.temperature)
    m = evaluate_predictions(y, p, raw, cfg.bootstrap, cfg.confidence, seed)
    return {"train_prior": pi0, "estimated_prior": prior, "labelled_prior": float(np.mean(y)),
            "threshold": raw, **{k: m[k] for k in _RULE_KEYS}}


def metrics_by(preds: pd.DataFrame, column: str, threshold: float, card: ModelCard, cfg: EvalConfig,
               seed: int = 0) -> dict:
    """Every metric with its bootstrap interval, calibration and prior shift per value of ``column`` of
    ``preds`` (e.g. ``region``): a model's accuracy where a user sweeps is its accuracy on that region, not the
    pooled figure."""
    out = {}
    for value, part in preds.groupby(column, sort=True):
        y, p = part["target"].to_numpy(), part["probability"].to_numpy()
        out[str(value)] = {**evaluate_predictions(y, p, threshold, cfg.bootstrap, cfg.confidence, seed),
                           "calibration": calibration_report(y, p, card),
                           "prior_shift": prior_shift_report(y, p, threshold, card, cfg, seed)}
    return out


def evaluate_model(model: LandslideClassifier, card: ModelCard, manifest: Manifest, out_dir: str, cfg: EvalConfig,
                   history: list[dict] | None = None, device: torch.device | str = "cpu", batch_size: int = 32,
                   num_workers: int = 0, seed: int = 0, title: str = "Evaluation",
                   extra_report: dict[str, Any] | None = None, adaptation: dict | None = None,
                   view: ChipView | None = None) -> dict:
    """Write predictions.csv, metrics.json, plots, galleries and report.md into ``out_dir``; return metrics.
    A ``view`` (:class:`landslide.data.dataset.ChipView`) changes every chip the same way for every score
    here: ``gsd_m`` resamples chips with a known ``gsd_m`` to that input GSD (usually the card's
    ``input_gsd``; the report says how many were and were not), ``square_px`` shows every chip as a square of
    that many pixels (``metrics['size_neutral']``)."""
    match_gsd = view.gsd_m if view else None
    storage.makedirs(out_dir)
    threshold, tta = card.threshold, card.tta
    started = time.perf_counter()
    preds, errors = predict_manifest(model, card, manifest, batch_size, device, num_workers, tta=tta,
                                     view=view)
    predict_seconds = time.perf_counter() - started
    if preds.empty:
        from landslide.errors import DataError
        raise DataError(f"{manifest.source}: no readable images to evaluate ({len(errors)} unreadable)")
    y, p = preds["target"].to_numpy(), preds["probability"].to_numpy()
    metrics = evaluate_predictions(y, p, threshold, cfg.bootstrap, cfg.confidence, seed)
    metrics["unreadable_images"] = errors
    if adaptation:
        metrics["adaptation"] = adaptation
    if "region" in manifest.frame.columns and manifest.frame["region"].notna().any():
        preds = preds.assign(region=manifest.frame["region"].fillna("unknown").to_numpy()[preds["index"]])
        metrics["by_region"] = metrics_by(preds, "region", threshold, card, cfg, seed)
    if view and view.square_px:  # a size-neutral view has one size: nothing to match
        metrics["size_neutral"] = size_neutral_report(manifest, view.square_px)
    else:
        metrics["size_matched"] = size_matched_report(manifest, preds, cfg, seed)
    metrics["gsd"] = gsd_report(manifest, card, match_gsd)
    if metrics["gsd"]["note"]:  # unknown: said once, in the log and the report; a mismatch is a warning
        (log.info if metrics["gsd"]["data_m"] is None or card.gsd_m is None or match_gsd else log.warning)(
            "%s", metrics["gsd"]["note"])
    metrics["calibration"] = calibration_report(y, p, card)
    metrics["prior_shift"] = prior_shift_report(y, p, threshold, card, cfg, seed)
    rules = (card.threshold_selection or {}).get("rules")
    if rules:  # every rule's validation threshold applied to these images: how much the choice of rule matters
        metrics["threshold_rules"] = {}
        for rule, t in rules.items():
            m = evaluate_predictions(y, p, t, cfg.bootstrap, cfg.confidence, seed)
            metrics["threshold_rules"][rule] = {"threshold": t, **{k: m[k] for k in _RULE_KEYS}}
    if tta != "none":
        preds = _without_tta(model, card, manifest, preds, cfg, metrics, device, batch_size, num_workers, seed,
                             view)
    if model.tag_encoder is not None:
        metrics["tags"] = evaluate_without_tags(model, card, manifest, preds, threshold, cfg, out_dir, device,
                                                batch_size, num_workers, seed, view)
    if model.size_head is not None and card.size_head and card.size_head.column in manifest.frame.columns:
        metrics["size"] = evaluate_size_head(model, card, manifest, cfg, device, batch_size, num_workers, seed,
                                             view)
    # end-to-end: decoding, transforms and the model, as a sweep would see it
    metrics["images_per_s"] = len(preds) / predict_seconds if predict_seconds > 0 else None
    metrics["model"] = {"name": card.name, "backbone": card.backbone, "input_size": card.input_size,
                        "version": card.version}
    preds = preds.assign(prediction=(p >= threshold).astype(int))
    preds["outcome"] = [outcome(t, q) for t, q in zip(preds["target"], preds["prediction"])]
    storage.write_text(storage.join(out_dir, "predictions.csv"), preds.drop(columns="index").to_csv(index=False))

    figures = {"confusion": "confusion_matrix.png", "roc": "roc_curve.png", "pr": "pr_curve.png"}
    plots.confusion_matrix(metrics["confusion"], storage.join(out_dir, figures["confusion"]))
    plots.roc_pr_curves(y, p, storage.join(out_dir, figures["roc"]), storage.join(out_dir, figures["pr"]), threshold)
    if history:
        figures["training"] = "training_curves.png"
        plots.training_curves(history, storage.join(out_dir, figures["training"]))

    items = explain_predictions(model, card, manifest, preds, threshold, cfg.cam_method, cfg.cam_max_images,
                                device=device, seed=seed, view=view)
    attention, galleries = {}, {}
    if items:
        attention = attention_stats.aggregate([it["shares"] for it in items], [it["outcome"] for it in items])
        attention["method"] = cfg.cam_method
        galleries = write_galleries(storage.join(out_dir, "gallery"), items, cfg.gallery_size)
        shares = pd.DataFrame([{"uri": it["uri"], "outcome": it["outcome"], **it["shares"]} for it in items])
        storage.write_text(storage.join(out_dir, "attention_per_image.csv"), shares.to_csv(index=False))
    metrics["attention"] = attention
    storage.write_json(storage.join(out_dir, "metrics.json"), _finite(metrics))
    write_report(storage.join(out_dir, "report.md"), title, metrics, card, figures, galleries, history,
                 extra_report or {})
    return metrics


def _finite(obj: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj
