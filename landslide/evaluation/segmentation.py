"""Footprint metrics: how well predicted landslide masks match the true ones, by pixel and by object.

Every image contributes one row of counts (:func:`image_counts`); every metric is a ratio of counts summed
over images, so intervals come from resampling rows (spatial groups when given, as for the classifier's
intervals) and summing again:

- **pixel** (micro-averaged over all pixels of all images): IoU = TP / (TP + FP + FN), F1 (Dice) =
  2TP / (2TP + FP + FN), precision, recall;
- **object**: each connected component (8-connected) of a mask is one landslide; a predicted object matches
  a true one when their IoU reaches the threshold (0.5 and 0.25 by default), one to one, greedily by IoU
  (as in COCO-style matching); object precision = matched / predicted objects, recall = matched / true
  objects, F1 their harmonic mean;
- **area**: total predicted over total true landslide area, and the relative error (in pixels; times
  GSD² for m²).

Masks are ``(H, W)`` arrays, non-zero = landslide. A metric whose denominator is zero (no landslide pixel
predicted or true anywhere) is NaN, never a silent 0 or 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

IOU_THRESHOLDS = (0.5, 0.25)
"""Object-matching IoU thresholds reported by default (issue 21; Landslide4Sense and most inventory
comparisons use 0.5)."""

_EIGHT = np.ones((3, 3), dtype=bool)


def components(mask: np.ndarray, min_pixels: int = 1) -> tuple[np.ndarray, int]:
    """8-connected components of a ``(H, W)`` mask: (labels ``(H, W)`` int32, 0 = background; count).
    Components smaller than ``min_pixels`` are dropped and the rest renumbered 1..count."""
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=_EIGHT)
    if min_pixels > 1 and n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_pixels
        keep[0] = False
        relabel = np.zeros(n + 1, dtype=np.int32)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1)
        labels, n = relabel[labels], int(keep.sum())
    return labels.astype(np.int32), int(n)


def object_ious(pred_labels: np.ndarray, n_pred: int, true_labels: np.ndarray, n_true: int) -> np.ndarray:
    """IoU of every (predicted, true) object pair: ``(n_pred, n_true)``."""
    if not n_pred or not n_true:
        return np.zeros((n_pred, n_true))
    joint = np.bincount((pred_labels.ravel().astype(np.int64) * (n_true + 1) + true_labels.ravel()),
                        minlength=(n_pred + 1) * (n_true + 1)).reshape(n_pred + 1, n_true + 1)
    inter = joint[1:, 1:].astype(float)
    pred_area = joint[1:, :].sum(axis=1, keepdims=True)
    true_area = joint[:, 1:].sum(axis=0, keepdims=True)
    return inter / (pred_area + true_area - inter)


def match_objects(ious: np.ndarray, threshold: float) -> int:
    """Number of one-to-one matches at IoU >= ``threshold``, taken greedily from the highest IoU."""
    if ious.size == 0:
        return 0
    pairs = np.argwhere(ious >= threshold)
    order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_p, used_t, matched = set(), set(), 0
    for i, j in pairs[order]:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched += 1
    return matched


def image_counts(pred: np.ndarray, true: np.ndarray, thresholds: tuple[float, ...] = IOU_THRESHOLDS,
                 min_object_px: int = 1) -> dict:
    """Counts of one image: pixel TP/FP/FN/TN, true and predicted objects and their matches per IoU
    threshold. ``pred`` and ``true`` are ``(H, W)`` masks of the same shape (ValueError otherwise);
    predicted objects below ``min_object_px`` pixels are ignored (true ones never are)."""
    pred, true = np.asarray(pred) > 0, np.asarray(true) > 0
    if pred.shape != true.shape:
        raise ValueError(f"predicted mask {pred.shape} and true mask {true.shape} differ in shape")
    pl, n_pred = components(pred, min_object_px)
    pred = pl > 0
    tl, n_true = components(true)
    ious = object_ious(pl, n_pred, tl, n_true)
    out = {"tp": int((pred & true).sum()), "fp": int((pred & ~true).sum()), "fn": int((~pred & true).sum()),
           "tn": int((~pred & ~true).sum()), "pred_objects": n_pred, "true_objects": n_true}
    for t in thresholds:
        out[f"matched@{t:g}"] = match_objects(ious, t)
    return out


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def metrics_from_counts(counts: pd.DataFrame | dict, thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict:
    """Pixel, object and area metrics from counts summed over images (a frame of :func:`image_counts`
    rows, or their sum)."""
    c = counts.sum() if isinstance(counts, pd.DataFrame) else counts
    tp, fp, fn = float(c["tp"]), float(c["fp"]), float(c["fn"])
    out = {"iou": _ratio(tp, tp + fp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
           "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
           "area_ratio": _ratio(tp + fp, tp + fn), "area_error": _ratio(fp - fn, tp + fn)}
    for t in thresholds:
        m = float(c[f"matched@{t:g}"])
        p, r = _ratio(m, float(c["pred_objects"])), _ratio(m, float(c["true_objects"]))
        f1 = float("nan") if p != p or r != r else (0.0 if p + r == 0 else 2 * p * r / (p + r))
        out[f"object@{t:g}"] = {"precision": p, "recall": r, "f1": f1}
    return out


def _flat(metrics: dict) -> dict[str, float]:
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    return flat


def segmentation_metrics(counts: pd.DataFrame, groups: np.ndarray | None = None,
                         thresholds: tuple[float, ...] = IOU_THRESHOLDS, n_boot: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> dict:
    """Every metric of :func:`metrics_from_counts` with percentile bootstrap intervals (``intervals``, keyed
    like ``iou`` or ``object@0.5.f1``): ``groups`` (one per row, e.g. spatial blocks) are resampled with
    replacement when given, else images. Also the totals: images, true and predicted objects, pixels."""
    counts = counts.reset_index(drop=True)
    out = metrics_from_counts(counts, thresholds)
    total = counts.sum()
    out.update({"images": int(len(counts)), "true_objects": int(total["true_objects"]),
                "pred_objects": int(total["pred_objects"]), "true_pixels": int(total["tp"] + total["fn"]),
                "pred_pixels": int(total["tp"] + total["fp"])})
    if n_boot <= 0 or len(counts) == 0:
        return out
    keys = np.asarray(groups) if groups is not None else np.arange(len(counts))
    unique, inverse = np.unique(keys, return_inverse=True)
    by_group = counts.groupby(inverse).sum()  # rows indexed 0..len(unique)-1
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(unique), len(unique))
        samples.append(_flat(metrics_from_counts(by_group.iloc[pick].sum(), thresholds)))
    frame = pd.DataFrame(samples)
    alpha = (1 - confidence) / 2
    out["intervals"] = {k: [float(frame[k].quantile(alpha)), float(frame[k].quantile(1 - alpha))]
                        for k in frame.columns if frame[k].notna().any()}
    out["interval_unit"] = "group" if groups is not None else "image"
    return out


SUMMARY_METRICS = {"pixel_iou": "iou", "pixel_f1": "f1", "pixel_precision": "precision", "pixel_recall": "recall",
                   "object_f1@0.5": "object@0.5.f1", "object_f1@0.25": "object@0.25.f1", "area_ratio": "area_ratio"}
"""The footprint metrics run summaries, model cards and experiment tables report, by name -> key in
:func:`segmentation_metrics` (flattened, as its ``intervals`` are keyed)."""


def summary_metrics(metrics: dict) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """The :data:`SUMMARY_METRICS` of a :func:`segmentation_metrics` result: ``(values, intervals)``, both keyed
    by summary name (``pixel_iou``, ``object_f1@0.5``, ...); a metric without an interval is left out of the
    intervals."""
    flat = _flat({k: v for k, v in metrics.items() if k != "intervals"})
    intervals = metrics.get("intervals", {})
    return ({name: flat.get(key) for name, key in SUMMARY_METRICS.items()},
            {name: intervals[key] for name, key in SUMMARY_METRICS.items() if key in intervals})
