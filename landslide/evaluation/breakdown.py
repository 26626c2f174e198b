"""Where a model errs: its test outcomes broken down by manifest columns (scene, mask coverage, source, ...).

A categorical column gives one row per value. A numeric column with many values gives quantile bins; a value
shared by more than a bin's share of the rows (e.g. a mask fraction of 0 for every non-landslide chip) is a bin
of its own, so the quantiles describe the rest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from landslide.evaluation.metrics import confusion

NUMERIC_BINS = 4
_MAX_CATEGORIES = 12


def bins(values: pd.Series, n_bins: int = NUMERIC_BINS) -> pd.Series:
    """Bin labels (strings, in order of value) for a numeric column; its own bin for a frequent value."""
    values = pd.to_numeric(values, errors="coerce")
    labels = pd.Series("missing", index=values.index, dtype=object)
    rest = values.dropna()
    common = rest.mode()
    if len(common) and (rest == common.iloc[0]).mean() > 1 / n_bins:
        labels[rest.index[rest == common.iloc[0]]] = f"= {common.iloc[0]:g}"
        rest = rest[rest != common.iloc[0]]
    if len(rest):
        cut = pd.qcut(rest, q=min(n_bins, rest.nunique()), duplicates="drop")
        labels[rest.index] = [f"{iv.left:.3g} – {iv.right:.3g}" for iv in cut]
    return labels


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and values.nunique() > _MAX_CATEGORIES)


def _row(value: str, part: pd.DataFrame) -> dict:
    counts = confusion(part["target"], part["prediction"])
    fn, fp = counts["fn"], counts["fp"]
    pos, neg = counts["tp"] + fn, counts["tn"] + fp
    return {"value": value, "n": int(len(part)), "landslide": pos, "non_landslide": neg, "errors": fn + fp,
            "error_rate": (fn + fp) / len(part), "FN": fn, "FP": fp,
            "recall": (pos - fn) / pos if pos else None, "specificity": (neg - fp) / neg if neg else None}


def error_breakdown(predictions: pd.DataFrame, manifest: pd.DataFrame, columns: list[str]) -> dict[str, dict]:
    """Per column: the outcomes of ``predictions`` (``uri``, ``target``, ``prediction``) by the column's values
    in ``manifest`` (joined on ``uri``). A column the manifest lacks gets an ``error`` instead of rows."""
    out: dict[str, dict] = {}
    for column in columns:
        if column not in manifest.columns:
            out[column] = {"error": f"the manifest has no column {column!r}"}
            continue
        frame = predictions.merge(manifest[["uri", column]].drop_duplicates("uri"), on="uri", how="left")
        numeric = _is_numeric(frame[column])
        keys = bins(frame[column]) if numeric else frame[column].astype(str).where(frame[column].notna(), "missing")
        order = sorted(keys.unique(), key=lambda k: (k == "missing", _bin_start(k) if numeric else k))
        out[column] = {"binned": numeric, "rows": [_row(k, frame[keys == k]) for k in order]}
    return out


def _bin_start(label: str) -> float:
    head = label.removeprefix("= ").split(" – ")[0]
    try:
        return float(head)
    except ValueError:
        return np.inf
