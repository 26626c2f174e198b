"""Acquisition confounds: does *how* a chip was made, rather than what it shows, give its label away?

Data sets assembled from several sources often differ by class in ways unrelated to landslides: in the Bijie
set, landslide chips were cropped around one landslide and are smaller than landslide-free chips
(``../shared/data/bijie_satellite/SOURCE.md``); elsewhere classes come from different sensors, formats or
compression. Every chip is resized to the model's input, but upsampling blur, aspect distortion and
compression artefacts survive the resize, so a model can score well without seeing a landslide.

Like the tag-leakage check (:mod:`landslide.evaluation.leakage`), each property of the image file is scored
alone by the grouped out-of-fold ROC AUC of a logistic regression (folds grouped by ``group``):

- **acquisition** properties: ``width``, ``height`` (px), ``aspect`` (log width/height), ``megapixels``
  (log) and ``format`` (PNG, JPEG, TIFF, ...); together as ``combined``. An AUC at or above ``max_auc`` is a
  confound (``data.confounds``: error / warn).
- **appearance**: ``brightness`` (mean of RGB, 0..1) and ``bytes_per_pixel`` (file size over pixels).
  Reported, never a confound by themselves: bare soil *is* brighter than forest, and a compressed file's size
  follows its content as much as its compression settings, so either predicting the label may be the
  landslide itself.

At most ``max_images`` chips are read (a class-stratified sample), so the check stays cheap on large sets.

After training, :func:`size_matched_auc` asks whether a *model* leans on chip size: its ROC AUC over pairs
of a landslide and a landslide-free chip of about the same size, beside the same figure for size alone.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from PIL import Image

from landslide import storage
from landslide.data.images import DEFAULT_MAX_PIXELS, decode_image
from landslide.errors import LandslideError
from landslide.evaluation.leakage import grouped_folds, out_of_fold_auc

ACQUISITION = ("width", "height", "aspect", "megapixels", "format")
APPEARANCE = ("brightness", "bytes_per_pixel")
_CATEGORICAL = ("format",)


def chip_properties(frame: pd.DataFrame, max_pixels: int = DEFAULT_MAX_PIXELS) -> pd.DataFrame:
    """Per row of ``frame`` (``uri``): the file's width, height, aspect, megapixels, format, bytes per pixel
    and mean brightness; ``unreadable`` holds the reason where a file cannot be read (its values NaN)."""
    rows = []
    for uri in frame["uri"]:
        row: dict = {"uri": uri, "unreadable": None}
        try:
            data = storage.read_bytes(uri)
            with Image.open(io.BytesIO(data)) as img:
                width, height, fmt = img.size[0], img.size[1], img.format or "unknown"
            rgb = decode_image(data, uri, max_pixels)
            row.update({"width": float(width), "height": float(height), "aspect": math.log(width / height),
                        "megapixels": math.log(width * height / 1e6), "format": fmt,
                        "bytes_per_pixel": len(data) / (width * height), "brightness": float(rgb.mean() / 255)})
        except (LandslideError, OSError, ValueError, ZeroDivisionError) as exc:
            row["unreadable"] = str(exc)[:200]
        rows.append(row)
    return pd.DataFrame(rows, index=frame.index)


def _features(values: pd.Series, categorical: bool) -> np.ndarray:
    if categorical:
        codes = pd.Categorical(values.fillna("unknown")).codes
        return np.eye(int(codes.max()) + 1, dtype=np.float32)[codes]
    x = values.to_numpy(dtype=float)
    x = np.where(np.isfinite(x), x, np.nanmean(x) if np.isfinite(x).any() else 0.0)
    std = x.std()
    return ((x - x.mean()) / (std if std > 0 else 1.0))[:, None]


def confound_check(frame: pd.DataFrame, max_auc: float = 0.7, folds: int = 5, seed: int = 0,
                   max_images: int = 2000, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """The confound report of a labelled table (``uri``, ``target``, optional ``group``): per property its
    out-of-fold AUC and class medians, ``combined`` (all acquisition properties), ``confounds`` (acquisition
    properties at or above ``max_auc``) and a one-line ``verdict``."""
    if len(frame) > max_images:  # a class-stratified sample keeps the check cheap on large sets
        frame = (frame.groupby("target", group_keys=False)
                 .apply(lambda part: part.sample(n=max(1, round(max_images * len(part) / len(frame))),
                                                 random_state=seed)))
    props = chip_properties(frame, max_pixels)
    readable = props["unreadable"].isna().to_numpy()
    data, props = frame[readable], props[readable]
    y = data["target"].astype(int).to_numpy()
    report: dict = {"rows": int(len(y)), "unreadable": int((~readable).sum()), "landslide": int(y.sum()),
                    "non_landslide": int(len(y) - y.sum()), "max_auc": max_auc, "properties": {},
                    "combined_auc": None, "confounds": []}
    if min(report["landslide"], report["non_landslide"]) < 2:
        report["verdict"] = "not checked: each class needs at least 2 readable images"
        return report
    splits = grouped_folds(data, y, folds, seed)
    report["folds"] = len(splits)
    for name in (*ACQUISITION, *APPEARANCE):
        values = props[name]
        entry = {"kind": "appearance" if name in APPEARANCE else "acquisition",
                 "auc": out_of_fold_auc(_features(values, name in _CATEGORICAL), y, splits)}
        if name in _CATEGORICAL:
            entry["landslide"] = values[y == 1].value_counts(normalize=True).round(3).to_dict()
            entry["non_landslide"] = values[y == 0].value_counts(normalize=True).round(3).to_dict()
        else:
            entry["median_landslide"] = float(np.nanmedian(values[y == 1]))
            entry["median_non_landslide"] = float(np.nanmedian(values[y == 0]))
        report["properties"][name] = entry
        if entry["kind"] == "acquisition" and entry["auc"] >= max_auc:
            report["confounds"].append({"property": name, "auc": entry["auc"]})
    combined = np.concatenate([_features(props[n], n in _CATEGORICAL) for n in ACQUISITION], axis=1)
    report["combined_auc"] = out_of_fold_auc(combined, y, splits)
    if report["combined_auc"] >= max_auc and not report["confounds"]:
        report["confounds"].append({"property": "<acquisition combined>", "auc": report["combined_auc"]})
    report["verdict"] = _verdict(report)
    return report


def _describe(name: str, entry: dict) -> str:
    if "median_landslide" in entry:
        shown = {"aspect": lambda v: f"{math.exp(v):.2f}", "megapixels": lambda v: f"{math.exp(v):.3f} Mpx"}.get(
            name, lambda v: f"{v:.3g}")
        return (f"{name} (median {shown(entry['median_landslide'])} for landslide vs "
                f"{shown(entry['median_non_landslide'])}; AUC {entry['auc']:.3f})")
    return f"{name} ({entry['landslide']} vs {entry['non_landslide']}; AUC {entry['auc']:.3f})"


def _verdict(report: dict) -> str:
    high = [f"{n} alone reaches AUC {report['properties'][n]['auc']:.3f}" for n in APPEARANCE
            if report["properties"][n]["auc"] >= report["max_auc"]]
    note = f" {'; '.join(high).capitalize()} (reported only: it may be the landslide itself)." if high else ""
    if not report["confounds"]:
        return (f"no acquisition confound: file properties together reach out-of-fold ROC AUC "
                f"{report['combined_auc']:.3f} (< {report['max_auc']:g}).{note}")
    parts = [_describe(c["property"], report["properties"][c["property"]]) if c["property"] in report["properties"]
             else f"all acquisition properties together (AUC {c['auc']:.3f})" for c in report["confounds"]]
    return ("the label is predictable from how chips were made: " + "; ".join(parts)
            + f" (limit {report['max_auc']:g}).{note}")


def confound_lines(report: dict | None) -> list[str]:
    """Markdown lines for reports."""
    if not report or not report.get("properties"):
        return []
    lines = [f"**Verdict**: {report['verdict']}", "", "| property | kind | out-of-fold AUC | landslide | "
             "non-landslide |", "|---|---|---|---|---|"]
    for name, e in report["properties"].items():
        if "median_landslide" in e:
            a, b = f"median {e['median_landslide']:.3g}", f"median {e['median_non_landslide']:.3g}"
        else:
            a, b = str(e["landslide"]), str(e["non_landslide"])
        lines.append(f"| {name} | {e['kind']} | {e['auc']:.3f} | {a} | {b} |")
    lines += ["", f"All acquisition properties together: out-of-fold ROC AUC {report['combined_auc']:.3f} "
                  f"({report.get('folds')} folds, {report['rows']} images)."]
    return lines


def size_matched_auc(y: np.ndarray, p: np.ndarray, side: np.ndarray, bins: int = 5, n_boot: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> dict | None:
    """Does a model's ranking survive when chip size cannot help? ROC AUC stratified by chip size.

    ``y`` (N,) 0/1 labels, ``p`` (N,) the model's probabilities, ``side`` (N,) each chip's side in pixels
    (the geometric mean of width and height). The chips are cut into ``bins`` quantile bins of ``side``; in
    each bin holding both classes the ROC AUC (scikit-learn) ranks landslide against landslide-free chips of
    similar size, and the bins are pooled weighted by their number of such pairs (the stratified AUC, an
    ordinary AUC restricted to within-bin pairs). The same is computed for size alone as the score, in
    whichever direction separates better (how much size still separates the classes inside the bins: near
    0.5 when the bins are narrow enough) and, for
    comparison, both without stratification. A model that merely ranks by size falls to the size-alone
    figure; one that sees landslides keeps its AUC. ``interval``: percentile bootstrap over images
    (``n_boot`` resamples). None when sizes do not vary or no bin holds both classes."""
    from sklearn.metrics import roc_auc_score

    y, p, side = np.asarray(y).astype(int), np.asarray(p, float), np.asarray(side, float)
    keep = np.isfinite(side) & (side > 0)
    y, p, side = y[keep], p[keep], side[keep]
    if len(np.unique(side)) < 2 or len(np.unique(y)) < 2:
        return None
    edges = np.unique(np.quantile(side, np.linspace(0, 1, bins + 1)))
    stratum = np.clip(np.searchsorted(edges, side, side="right") - 1, 0, len(edges) - 2)

    def stratified(yy, score, ss) -> tuple[float, int]:
        total, pairs = 0.0, 0
        for b in np.unique(ss):
            m = ss == b
            pos, neg = int(yy[m].sum()), int((1 - yy[m]).sum())
            if pos and neg:
                total += roc_auc_score(yy[m], score[m]) * pos * neg
                pairs += pos * neg
        return (total / pairs if pairs else float("nan")), pairs

    model, pairs = stratified(y, p, stratum)
    if not pairs:
        return None
    size_alone, _ = stratified(y, side, stratum)
    size_overall = roc_auc_score(y, side)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(max(0, n_boot)):
        i = rng.integers(0, len(y), len(y))
        value, n = stratified(y[i], p[i], stratum[i])
        if n:
            boots.append(value)
    alpha = (1 - confidence) / 2
    interval = [float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))] if boots else None
    return {"model": float(model), "interval": interval, "size_alone": float(max(size_alone, 1 - size_alone)),
            "model_unmatched": float(roc_auc_score(y, p)),
            "size_alone_unmatched": float(max(size_overall, 1 - size_overall)),
            "bins": len(edges) - 1, "side_px_edges": [float(e) for e in edges], "pairs": int(pairs),
            "all_pairs": int(y.sum() * (1 - y).sum()), "images": int(len(y))}
