"""Footprints on labelled chips: from a footprint (segmentation) model, or from a chip classifier's Grad-CAM
(the baseline of issue 21); the pixel threshold chosen on validation masks; and the evaluation (pixel, object and
area metrics with group-bootstrap intervals, by region; :mod:`.segmentation`) with galleries of true and
predicted outlines by outcome.

Masks are scored at the model's input size (each chip and its mask resized to ``card.input_size``, the mask
by nearest neighbour), so pixel shares and object counts are those of the chip, at the model's resolution.
"""

from __future__ import annotations

import heapq
import logging
import math
from typing import Any, Iterator, Protocol

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from landslide import storage
from landslide.config import EvalConfig
from landslide.data.dataset import SegmentationDataset, collate_skip_bad
from landslide.data.images import DEFAULT_MAX_PIXELS
from landslide.data.manifest import Manifest
from landslide.data.transforms import denormalize
from landslide.evaluation.segmentation import IOU_THRESHOLDS, image_counts, segmentation_metrics
from landslide.explain.gallery import outline_overlay, write_galleries
from landslide.models.card import ModelCard
from landslide.models.tta import probabilities as tta_probabilities

log = logging.getLogger(__name__)

_BINS = 200
"""Probability histogram bins for the threshold choice (0.005 wide): memory stays flat with the split."""

OUTCOMES = ("found", "partial", "missed", "false_alarm", "clean")
"""Chip outcomes of a footprint evaluation (:func:`chip_outcome`), the galleries' folders."""


class PixelScores(Protocol):
    """Per-pixel landslide scores in [0, 1] for a batch of :class:`SegmentationDataset` items."""

    kind: str
    """``segmentation`` (a footprint model's probabilities) or ``gradcam`` (a classifier's Grad-CAM)."""

    def __call__(self, batch: dict) -> np.ndarray:
        """``batch["image"]`` ``(B, 3, S, S)`` (and ``tags``) -> float32 ``(B, S, S)``."""

    def close(self) -> None:
        """Release hooks."""


class SegmenterScores:
    """A footprint model's pixel landslide probabilities: the sigmoid of its logits."""

    kind = "segmentation"

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, batch: dict) -> np.ndarray:
        return torch.sigmoid(self.model(batch["image"].to(self.device)).float())[:, 0].cpu().numpy()

    def close(self) -> None:
        pass


class CamScores:
    """Footprints from a chip classifier (issue 21, the baseline for footprint models): on chips it calls
    landslide (probability >= the card's threshold, with the card's test-time augmentation) the Grad-CAM map
    of the landslide class, which pytorch-grad-cam scales to [0, 1] per chip and upsamples bilinearly from the
    CAM layer (stride 32 for most backbones: 4 x 4 cells for a 128-px input); zero on every other chip. A
    footprint is then where this map reaches a threshold chosen on validation masks
    (:func:`choose_pixel_threshold`). Selvaraju et al., "Grad-CAM", ICCV 2017."""

    kind = "gradcam"

    def __init__(self, model: torch.nn.Module, card: ModelCard, method: str = "gradcam",
                 device: torch.device | str = "cpu"):
        from landslide.explain.gradcam import CamExplainer

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.card = card
        self.method = method
        self.explainer = CamExplainer(self.model, method)

    def __call__(self, batch: dict) -> np.ndarray:
        images = batch["image"].to(self.device)
        tags = batch.get("tags")
        tags = None if tags is None else tags.to(self.device)
        with torch.no_grad():
            probs = tta_probabilities(self.model, images, tags, self.card.tta).cpu().numpy()
        keep = probs >= self.card.threshold
        out = np.zeros((images.shape[0], *images.shape[-2:]), np.float32)
        if keep.any():
            chosen = torch.from_numpy(np.flatnonzero(keep)).to(self.device)
            out[keep] = self.explainer(images[chosen], classes=[1] * int(keep.sum()),
                                       tags=None if tags is None else tags[chosen])
        return out

    def close(self) -> None:
        self.explainer.close()


def mask_loader(manifest: Manifest, card: ModelCard, batch_size: int = 16, num_workers: int = 0,
                max_pixels: int = DEFAULT_MAX_PIXELS, schema=None) -> DataLoader:
    """Batches of chips and masks at the model's input size (``collate_skip_bad``: bad ones in ``errors``);
    with a tag ``schema`` they carry the chips' encoded tags."""
    dataset = SegmentationDataset(manifest, card.transform(), card.input_size, max_pixels, schema=schema)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_skip_bad)


def predict_masks(scores: PixelScores | torch.nn.Module, loader: DataLoader, device: torch.device | str = "cpu"
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[dict], torch.Tensor | None]]:
    """Per batch: (indices ``(B,)``, scores ``(B, S, S)`` float32, true masks ``(B, S, S)`` bool, errors,
    the normalised images ``(B, 3, S, S)`` or None). A bare footprint model is wrapped in
    :class:`SegmenterScores`."""
    if isinstance(scores, torch.nn.Module):
        scores = SegmenterScores(scores, device)
    for batch in loader:
        if batch["image"] is None:
            yield (np.zeros(0, int), np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0), bool), batch["errors"],
                   None)
            continue
        yield batch["index"].numpy(), scores(batch), batch["mask"][:, 0].numpy() > 0.5, batch["errors"], batch["image"]


def _schema(scores) -> Any:
    model = getattr(scores, "model", None)
    return getattr(model, "tag_schema", None) if scores is not None and getattr(scores, "kind", "") == "gradcam" \
        else None


def choose_pixel_threshold(scores: PixelScores | torch.nn.Module, card: ModelCard, manifest: Manifest,
                           rule: str = "f1", fixed: float = 0.5, batch_size: int = 16,
                           device: torch.device | str = "cpu", num_workers: int = 0,
                           max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """The pixel threshold on validation masks: ``f1`` maximises pixel F1 (Dice) over thresholds 0.005 apart
    (from score histograms of landslide and other pixels, so memory does not grow with the split);
    ``fixed`` keeps ``fixed``, as does ``f1`` when the masks hold no landslide pixel or F1 is 0 everywhere
    (logged). ``scores``: a footprint model (or :class:`SegmenterScores`) or :class:`CamScores`. Returns
    ``{method, value, chosen_on, unit, validation_metrics}`` (pixel IoU, F1, precision, recall at the chosen
    value)."""
    if isinstance(scores, torch.nn.Module):
        scores = SegmenterScores(scores, device)
    pos = np.zeros(_BINS, np.int64)
    neg = np.zeros(_BINS, np.int64)
    loader = mask_loader(manifest, card, batch_size, num_workers, max_pixels, _schema(scores))
    for _, probs, truth, _, _ in predict_masks(scores, loader, device):
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
    unit = "pixel probability" if scores.kind == "segmentation" else f"{getattr(scores, 'method', 'gradcam')} value"
    return {"method": method, "value": value, "chosen_on": "validation", "unit": unit,
            "validation_metrics": {k: float(v) for k, v in metrics.items()}}


MIN_OBJECT_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
"""Minimum footprint sizes (pixels at the model's input size) :func:`choose_min_object_px` tries."""


def choose_min_object_px(scores: PixelScores | torch.nn.Module, card: ModelCard, manifest: Manifest,
                         threshold: float, candidates: tuple[int, ...] = MIN_OBJECT_CANDIDATES,
                         batch_size: int = 16, device: torch.device | str = "cpu", num_workers: int = 0,
                         max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """The minimum footprint size (a minimum mapping unit, in pixels at the model's input size) that maximises
    object F1 at IoU 0.5 on validation masks at pixel ``threshold``; the smallest candidate on ties and when no
    chip has a landslide (1: keep every footprint). One pass over the split; memory holds counts only.
    Returns ``{value, chosen_on, object_f1: {candidate: F1}}``."""
    from landslide.evaluation.segmentation import metrics_from_counts

    if isinstance(scores, torch.nn.Module):
        scores = SegmenterScores(scores, device)
    totals = {c: {} for c in candidates}
    loader = mask_loader(manifest, card, batch_size, num_workers, max_pixels, _schema(scores))
    for _, probs, truth, _, _ in predict_masks(scores, loader, device):
        for p, t in zip(probs, truth):
            pred = p >= threshold
            for c in candidates:
                for key, value in image_counts(pred, t, min_object_px=c).items():
                    totals[c][key] = totals[c].get(key, 0) + value
    f1 = {c: metrics_from_counts(totals[c])["object@0.5"]["f1"] if totals[c] else math.nan for c in candidates}
    usable = {c: v for c, v in f1.items() if v == v}
    value = max(usable, key=lambda c: (usable[c], -c)) if usable and max(usable.values()) > 0 else min(candidates)
    return {"value": int(value), "chosen_on": "validation", "rule": "object F1 at IoU 0.5",
            "object_f1": {str(c): (float(v) if v == v else None) for c, v in f1.items()}}


def chip_outcome(counts: dict) -> str:
    """A chip's footprint outcome from its :func:`image_counts`: with true landslide pixels, ``found`` (chip
    pixel IoU >= 0.5), ``partial`` (some overlap) or ``missed`` (none); without, ``false_alarm`` (any predicted
    pixel) or ``clean``."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    if tp + fn > 0:
        return "found" if tp / (tp + fp + fn) >= 0.5 else ("partial" if tp > 0 else "missed")
    return "false_alarm" if fp > 0 else "clean"


def _gallery_rank(outcome: str, row: dict) -> float:
    """Lower is shown first: the best matches, the largest partial and missed landslides, the largest false
    alarms; clean chips in manifest order."""
    iou = row["tp"] / max(row["tp"] + row["fp"] + row["fn"], 1)
    return {"found": -iou, "partial": -row["true_share"], "missed": -row["true_share"],
            "false_alarm": -row["predicted_share"]}.get(outcome, row["index"])


def footprint_counts(scores: PixelScores | torch.nn.Module, card: ModelCard, manifest: Manifest,
                     threshold: float | None = None, batch_size: int = 16, device: torch.device | str = "cpu",
                     num_workers: int = 0, min_object_px: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                     gallery_size: int = 0) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """One row of :func:`landslide.evaluation.segmentation.image_counts` per readable chip (with ``index``,
    ``uri``, ``target``, ``outcome``, predicted and true landslide ``share``) at ``threshold`` (default: the
    card's pixel threshold), predicted footprints under ``min_object_px`` (default: the card's) dropped; the
    bad chips; and up to ``gallery_size`` outline overlays per outcome
    (:func:`landslide.explain.gallery.outline_overlay`; memory bounded by that number, not by the split)."""
    from landslide.evaluation.segmentation import components

    if isinstance(scores, torch.nn.Module):
        scores = SegmenterScores(scores, device)
    threshold = card.threshold if threshold is None else threshold
    min_object_px = card.min_object_px if min_object_px is None else min_object_px
    rows, errors = [], []
    kept: dict[str, list] = {o: [] for o in OUTCOMES}  # per outcome a heap of (-rank, index, item)
    frame = manifest.frame
    norm = card.normalization
    loader = mask_loader(manifest, card, batch_size, num_workers, max_pixels, _schema(scores))
    for idx, probs, truth, errs, images in predict_masks(scores, loader, device):
        errors += errs
        for k, (i, p, t) in enumerate(zip(idx, probs, truth)):
            pred = p >= threshold
            if min_object_px > 1:
                pred = components(pred, min_object_px)[0] > 0
            row = {"index": int(i), "uri": frame["uri"].iloc[i], "target": int(frame["target"].iloc[i]),
                   "predicted_share": float(pred.mean()), "true_share": float(t.mean()),
                   **image_counts(pred, t, min_object_px=min_object_px)}
            row["outcome"] = outcome = chip_outcome(row)
            rows.append(row)
            if gallery_size > 0:
                rank = _gallery_rank(outcome, row)
                heap = kept[outcome]
                if len(heap) < gallery_size or -rank > heap[0][0]:
                    iou = row["tp"] / max(row["tp"] + row["fp"] + row["fn"], 1)
                    item = {"uri": row["uri"], "outcome": outcome, "probability": float(p.max()), "rank": rank,
                            "label": f"IoU={iou:.2f}" if row["tp"] + row["fn"] else f"area={row['predicted_share']:.2f}",
                            "overlay": outline_overlay(denormalize(images[k], norm.mean, norm.std), t, pred)}
                    entry = (-rank, int(i), item)
                    heapq.heappush(heap, entry) if len(heap) < gallery_size else heapq.heapreplace(heap, entry)
    items = [entry[2] for heap in kept.values() for entry in heap]
    return pd.DataFrame(rows), errors, items


def evaluate_footprints(scores: PixelScores | torch.nn.Module, card: ModelCard, manifest: Manifest, out_dir: str,
                        cfg: EvalConfig, device: torch.device | str = "cpu", batch_size: int = 16,
                        num_workers: int = 0, seed: int = 0, title: str = "Footprints",
                        extra_report: dict[str, Any] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                        threshold: dict | None = None) -> dict:
    """Score footprints on labelled chips with masks: ``metrics.json`` (pixel IoU/F1/precision/recall,
    object precision/recall/F1 at IoU 0.5 and 0.25, area ratio and error; 95 % intervals from a bootstrap over
    the manifest's ``group`` column, else over chips; ``by_region``; chip ``outcomes``), ``footprints.csv``
    (per-chip counts and outcome), ``gallery/`` (true outlines cyan, predicted magenta, up to
    ``cfg.gallery_size`` chips per outcome) and ``report.md`` in ``out_dir``.

    ``scores``: a footprint model (or :class:`SegmenterScores`), whose pixel threshold is the card's; or
    :class:`CamScores`, a classifier's Grad-CAM footprints, whose ``threshold`` (a
    :func:`choose_pixel_threshold` result, chosen on validation masks) must be given. Returns the metrics.
    DataError when no chip could be read."""
    if isinstance(scores, torch.nn.Module):
        scores = SegmenterScores(scores, device)
    if threshold is None and scores.kind != "segmentation":
        raise ValueError("evaluate_footprints: Grad-CAM footprints need a threshold chosen on validation masks")
    value = card.threshold if threshold is None else float(threshold["value"])
    min_px = card.min_object_px if threshold is None else int((threshold.get("min_object_px") or {}).get("value", 1))
    storage.makedirs(out_dir)
    counts, errors, items = footprint_counts(scores, card, manifest, value, batch_size, device, num_workers,
                                             min_px, max_pixels=max_pixels, gallery_size=cfg.gallery_size)
    if counts.empty:
        from landslide.errors import DataError
        raise DataError(f"{manifest.source}: no readable chip with a mask to evaluate ({len(errors)} unreadable)")
    frame = manifest.frame
    groups = (frame["group"].astype(str).to_numpy()[counts["index"]] if "group" in frame.columns
              and frame["group"].notna().all() else None)
    numeric = counts.drop(columns=["index", "uri", "target", "predicted_share", "true_share", "outcome"])
    metrics = segmentation_metrics(numeric, groups, IOU_THRESHOLDS, cfg.bootstrap, cfg.confidence, seed)
    metrics.update({"threshold": value, "min_object_px": min_px, "input_size": card.input_size,
                    "unreadable_images": errors,
                    "footprints_from": scores.kind,
                    "threshold_selection": threshold or {"method": "model card", "value": value,
                                                         "chosen_on": "validation", "unit": "pixel probability"},
                    "outcomes": {o: int((counts["outcome"] == o).sum()) for o in OUTCOMES},
                    "model": {"name": card.name, "backbone": card.backbone, "architecture": card.architecture,
                              "version": card.version, "task": card.task}})
    if scores.kind == "gradcam":
        metrics["cam_method"] = getattr(scores, "method", "gradcam")
        metrics["classifier_threshold"] = card.threshold
    if "region" in frame.columns and frame["region"].notna().any():
        regions = frame["region"].fillna("unknown").astype(str).to_numpy()[counts["index"]]
        counts = counts.assign(region=regions)
        metrics["by_region"] = {
            r: segmentation_metrics(numeric[regions == r], None if groups is None else groups[regions == r],
                                    IOU_THRESHOLDS, cfg.bootstrap, cfg.confidence, seed)
            for r in sorted(set(regions))}
    if cfg.gallery_size > 0:
        galleries = write_galleries(storage.join(out_dir, "gallery"), items, cfg.gallery_size, OUTCOMES)
        for name, gallery in galleries.items():  # the gallery holds a sample; count every chip
            gallery["count"] = metrics["outcomes"][name]
        metrics["galleries"] = galleries
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


_CAM_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "eigencam": "EigenCAM"}
_OUTCOME_WORDS = {"found": "true landslide pixels, chip IoU >= 0.5", "partial": "some overlap, IoU < 0.5",
                  "missed": "true landslide pixels, none predicted", "false_alarm": "no true landslide pixel, some "
                  "predicted", "clean": "none true, none predicted"}


def footprint_report(metrics: dict, title: str, extra: dict[str, Any] | None = None) -> str:
    """Markdown: the metrics table (all chips and each region) with intervals, chip outcomes and galleries,
    and what they mean."""
    regions = metrics.get("by_region") or {}
    head = "| metric | all chips |" + "".join(f" {r} |" for r in regions)
    model = metrics["model"]
    selection = metrics.get("threshold_selection") or {}
    if metrics.get("footprints_from") == "gradcam":
        method = _CAM_NAMES.get(metrics.get("cam_method", "gradcam"), metrics.get("cam_method"))
        source = (f"- **footprints from**: {method} maps of a chip classifier "
                  f"({model['name']}, `{model['backbone']}`, version {model['version']}), on chips it calls landslide "
                  f"(probability >= {metrics['classifier_threshold']:.3f}); a baseline for footprint models")
        rule = (f"- **threshold**: {metrics['threshold']:.3f} on the {method} map ({selection.get('method', '?')}, "
                f"chosen on validation masks)")
    else:
        source = (f"- **model**: {model['name']} ({model['architecture']} on `{model['backbone']}`, version "
                  f"{model['version']})")
        where = "in the model card" if selection.get("method") == "model card" else selection.get("chosen_on", "")
        rule = f"- **pixel threshold**: {metrics['threshold']:.3f} (chosen on validation masks; {where})"
    rule += (f"; footprints under {metrics.get('min_object_px', 1)} px (at the input size) dropped, the minimum "
             "chosen on validation masks for object F1" if metrics.get("min_object_px", 1) > 1 else
             "; every predicted footprint kept (no minimum size)")
    lines = [f"# {title}", "", *(f"- **{k}**: {v}" for k, v in (extra or {}).items()), source,
             f"- **chips**: {metrics['images']} ({metrics['true_objects']} true landslides, "
             f"{metrics['pred_objects']} predicted); unreadable: {len(metrics.get('unreadable_images', []))}",
             rule,
             f"- scored at the model's input size ({metrics['input_size']} px); objects are 8-connected groups "
             "of pixels, matched one to one at IoU >= 0.5 (and 0.25); 95 % intervals from a bootstrap over "
             f"{metrics.get('interval_unit', 'chip')}s", "", head, "|---|---|" + "---|" * len(regions)]
    for name, key in _ROWS:
        lines.append(f"| {name} | {_cell(metrics, key)} |" + "".join(f" {_cell(m, key)} |" for m in regions.values()))
    outcomes = metrics.get("outcomes")
    if outcomes:
        galleries = metrics.get("galleries") or {}
        lines += ["", "## Chips by outcome", "",
                  "Galleries: true outline cyan, predicted outline magenta, at twice the model's input size.", "",
                  "| outcome | chips | meaning | gallery |", "|---|---|---|---|"]
        for name, count in outcomes.items():
            sheet = (galleries.get(name) or {}).get("sheet")
            lines.append(f"| {name} | {count} | {_OUTCOME_WORDS[name]} | "
                         + (f"[sheet](gallery/{sheet})" if sheet else "-") + " |")
    return "\n".join(lines) + "\n"
