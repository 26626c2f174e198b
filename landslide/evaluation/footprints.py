"""Footprint models on labelled chips: pixel threshold chosen on validation masks, and the test evaluation
(pixel, object and area metrics with group-bootstrap intervals, by region; :mod:`.segmentation`).

Masks are scored at the model's input size (each chip and its mask resized to ``card.input_size``, the mask
by nearest neighbour), so pixel shares and object counts are those of the chip, at the model's resolution.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from landslide import storage
from landslide.config import EvalConfig
from landslide.data.dataset import SegmentationDataset, collate_skip_bad
from landslide.data.images import DEFAULT_MAX_PIXELS
from landslide.data.manifest import Manifest
from landslide.evaluation.segmentation import IOU_THRESHOLDS, image_counts, segmentation_metrics
from landslide.models.card import ModelCard

log = logging.getLogger(__name__)

_BINS = 200
"""Probability histogram bins for the threshold choice (0.005 wide): memory stays flat with the split."""


def mask_loader(manifest: Manifest, card: ModelCard, batch_size: int = 16, num_workers: int = 0,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> DataLoader:
    """Batches of chips and masks at the model's input size (``collate_skip_bad``: bad ones in ``errors``)."""
    norm = card.normalization
    dataset = SegmentationDataset(manifest, card.input_size, tuple(norm.mean), tuple(norm.std), max_pixels)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_skip_bad)


@torch.no_grad()
def predict_masks(model: torch.nn.Module, loader: DataLoader, device: torch.device | str = "cpu"
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]]:
    """Per batch: (indices ``(B,)``, probabilities ``(B, S, S)`` float32, true masks ``(B, S, S)`` bool,
    errors)."""
    device = torch.device(device)
    model = model.to(device).eval()
    for batch in loader:
        if batch["image"] is None:
            yield np.zeros(0, int), np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0), bool), batch["errors"]
            continue
        probs = torch.sigmoid(model(batch["image"].to(device)).float())[:, 0].cpu().numpy()
        yield batch["index"].numpy(), probs, batch["mask"][:, 0].numpy() > 0.5, batch["errors"]


def choose_pixel_threshold(model: torch.nn.Module, card: ModelCard, manifest: Manifest, rule: str = "f1",
                           fixed: float = 0.5, batch_size: int = 16, device: torch.device | str = "cpu",
                           num_workers: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """The pixel threshold on validation masks: ``f1`` maximises pixel F1 (Dice) over thresholds 0.005 apart
    (from probability histograms of landslide and other pixels, so memory does not grow with the split);
    ``fixed`` keeps ``fixed``, as does ``f1`` when the masks hold no landslide pixel or F1 is 0 everywhere
    (logged). Returns ``{method, value, chosen_on, validation_metrics}`` (pixel IoU, F1,
    precision, recall at the chosen value)."""
    pos = np.zeros(_BINS, np.int64)
    neg = np.zeros(_BINS, np.int64)
    for _, probs, truth, _ in predict_masks(model, mask_loader(manifest, card, batch_size, num_workers, max_pixels),
                                            device):
        bins = np.minimum((probs * _BINS).astype(int), _BINS - 1)
        pos += np.bincount(bins[truth], minlength=_BINS)
        neg += np.bincount(bins[~truth], minlength=_BINS)
    edges = np.arange(_BINS) / _BINS  # threshold t_k = k / BINS: pixels in bins >= k are landslide
    tp = pos[::-1].cumsum()[::-1].astype(float)
    fp = neg[::-1].cumsum()[::-1].astype(float)
    fn = pos.sum() - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    usable = pos.sum() > 0 and np.isfinite(f1[1:]).any() and np.nanmax(f1[1:]) > 0
    if rule == "f1" and usable:
        k = 1 + int(np.nanargmax(f1[1:]))  # never 0: "everything is landslide" is not a threshold
        value, method = float(edges[k]), "f1"
    else:
        if rule == "f1":  # nothing to maximise: no landslide pixel, or none ever found
            log.warning("pixel threshold: the validation masks hold %d landslide pixels and F1 is %s at every "
                        "threshold; keeping the fixed threshold %.2f", int(pos.sum()),
                        "undefined" if not pos.sum() else "0", fixed)
        value, method = float(fixed), "fixed"
        k = min(max(int(round(value * _BINS)), 1), _BINS - 1)
    t, p, n = tp[k], fp[k], fn[k]
    metrics = {"iou": t / (t + p + n) if t + p + n else math.nan, "f1": f1[k] if np.isfinite(f1[k]) else math.nan,
               "precision": t / (t + p) if t + p else math.nan, "recall": t / (t + n) if t + n else math.nan,
               "landslide_pixels": int(pos.sum()), "pixels": int(pos.sum() + neg.sum())}
    return {"method": method, "value": value, "chosen_on": "validation", "unit": "pixel probability",
            "validation_metrics": {k: float(v) for k, v in metrics.items()}}


def footprint_counts(model: torch.nn.Module, card: ModelCard, manifest: Manifest, batch_size: int = 16,
                     device: torch.device | str = "cpu", num_workers: int = 0, min_object_px: int = 1,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[pd.DataFrame, list[dict]]:
    """One row of :func:`landslide.evaluation.segmentation.image_counts` per readable chip (with ``index``,
    ``uri``, ``target``, ``landslide_share`` predicted), at the card's pixel threshold; and the bad chips."""
    rows, errors = [], []
    frame = manifest.frame
    loader = mask_loader(manifest, card, batch_size, num_workers, max_pixels)
    for idx, probs, truth, errs in predict_masks(model, loader, device):
        errors += errs
        for i, p, t in zip(idx, probs, truth):
            pred = p >= card.threshold
            rows.append({"index": int(i), "uri": frame["uri"].iloc[i], "target": int(frame["target"].iloc[i]),
                         "predicted_share": float(pred.mean()), "true_share": float(t.mean()),
                         **image_counts(pred, t, min_object_px=min_object_px)})
    return pd.DataFrame(rows), errors


def evaluate_footprints(model: torch.nn.Module, card: ModelCard, manifest: Manifest, out_dir: str, cfg: EvalConfig,
                        device: torch.device | str = "cpu", batch_size: int = 16, num_workers: int = 0,
                        seed: int = 0, title: str = "Footprints", extra_report: dict[str, Any] | None = None,
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Score a footprint model on labelled chips with masks: ``metrics.json`` (pixel IoU/F1/precision/recall,
    object precision/recall/F1 at IoU 0.5 and 0.25, area ratio and error; 95 % intervals from a bootstrap over
    the manifest's ``group`` column, else over chips; ``by_region``), ``footprints.csv`` (per-chip counts) and
    ``report.md`` in ``out_dir``. Returns the metrics. DataError when no chip could be read."""
    storage.makedirs(out_dir)
    counts, errors = footprint_counts(model, card, manifest, batch_size, device, num_workers, max_pixels=max_pixels)
    if counts.empty:
        from landslide.errors import DataError
        raise DataError(f"{manifest.source}: no readable chip with a mask to evaluate ({len(errors)} unreadable)")
    frame = manifest.frame
    groups = (frame["group"].astype(str).to_numpy()[counts["index"]] if "group" in frame.columns
              and frame["group"].notna().all() else None)
    numeric = counts.drop(columns=["index", "uri", "target", "predicted_share", "true_share"])
    metrics = segmentation_metrics(numeric, groups, IOU_THRESHOLDS, cfg.bootstrap, cfg.confidence, seed)
    metrics.update({"threshold": card.threshold, "input_size": card.input_size, "unreadable_images": errors,
                    "model": {"name": card.name, "backbone": card.backbone, "architecture": card.architecture,
                              "version": card.version}})
    if "region" in frame.columns and frame["region"].notna().any():
        regions = frame["region"].fillna("unknown").astype(str).to_numpy()[counts["index"]]
        counts = counts.assign(region=regions)
        metrics["by_region"] = {
            r: segmentation_metrics(numeric[regions == r], None if groups is None else groups[regions == r],
                                    IOU_THRESHOLDS, cfg.bootstrap, cfg.confidence, seed)
            for r in sorted(set(regions))}
    storage.write_text(storage.join(out_dir, "footprints.csv"), counts.drop(columns="index").to_csv(index=False))
    storage.write_json(storage.join(out_dir, "metrics.json"), metrics)
    storage.write_text(storage.join(out_dir, "report.md"), footprint_report(metrics, title, extra_report))
    return metrics


def _cell(metrics: dict, key: str) -> str:
    value = metrics
    for part in key.split("/"):
        value = value.get(part, math.nan) if isinstance(value, dict) else math.nan
    interval = (metrics.get("intervals") or {}).get(key.replace("/", "."))
    text = "n/a" if value is None or value != value else f"{value:.3f}"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


_ROWS = (("pixel IoU", "iou"), ("pixel F1 (Dice)", "f1"), ("pixel precision", "precision"),
         ("pixel recall", "recall"), ("object F1 @ IoU 0.5", "object@0.5/f1"),
         ("object precision @ 0.5", "object@0.5/precision"), ("object recall @ 0.5", "object@0.5/recall"),
         ("object F1 @ IoU 0.25", "object@0.25/f1"), ("predicted / true area", "area_ratio"))


def footprint_report(metrics: dict, title: str, extra: dict[str, Any] | None = None) -> str:
    """Markdown: the metrics table (all chips and each region) with intervals, and what they mean."""
    regions = metrics.get("by_region") or {}
    head = "| metric | all chips |" + "".join(f" {r} |" for r in regions)
    lines = [f"# {title}", "", *(f"- **{k}**: {v}" for k, v in (extra or {}).items()),
             f"- **model**: {metrics['model']['name']} ({metrics['model']['architecture']} on "
             f"`{metrics['model']['backbone']}`, version {metrics['model']['version']})",
             f"- **chips**: {metrics['images']} ({metrics['true_objects']} true landslides, "
             f"{metrics['pred_objects']} predicted); unreadable: {len(metrics.get('unreadable_images', []))}",
             f"- **pixel threshold**: {metrics['threshold']:.3f} (chosen on validation masks; in the model card)",
             f"- scored at the model's input size ({metrics['input_size']} px); objects are 8-connected groups "
             "of pixels, matched one to one at IoU >= 0.5 (and 0.25); 95 % intervals from a bootstrap over "
             f"{metrics.get('interval_unit', 'chip')}s", "", head, "|---|---|" + "---|" * len(regions)]
    for name, key in _ROWS:
        lines.append(f"| {name} | {_cell(metrics, key)} |" + "".join(f" {_cell(m, key)} |" for m in regions.values()))
    return "\n".join(lines) + "\n"
