"""Tag leakage: do the tags alone give the label away?

Catalog tags are joined by location, and catalogs list landslides: a naive data set ends up with tags on
(nearly) every landslide chip and on (nearly) no other chip, as in the study. A multi-modal model then learns
"has a tag => landslide" and its test scores say nothing about the images. This module measures that on a
labelled table (the training split), per tag column and for all tags together:

- **presence**: how often the tag is known in each class, and the ROC AUC of "tag known" as a score;
- **values**: the out-of-fold ROC AUC of a logistic regression on that column alone (its values, with
  unknown as a value of its own);
- **combined**: the same on all tag columns together.

Folds are grouped by the ``group`` column when there is one (chips near one event share its tags). The presence
AUC is folded to >= 0.5 (a tag known only for non-landslides leaks as much as one known only for landslides);
the logistic regressions learn the direction themselves, so their out-of-fold AUC is taken as it is. An AUC at
or above ``max_auc`` is a leak.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from landslide.data.tags import TagSchema


def _features(schema: TagSchema, frame: pd.DataFrame) -> np.ndarray:
    """One-hot categories (unknown included), standardised numbers and their missing flags."""
    enc = schema.encode(frame)
    c = len(schema.categorical)
    parts = [np.eye(len(vocab) + 1, dtype=np.float32)[enc[:, j].astype(int)]
             for j, vocab in enumerate(schema.categorical.values())]
    parts.append(enc[:, c:])
    return np.concatenate(parts, axis=1)


def _auc(y: np.ndarray, score: np.ndarray, folded: bool = False) -> float:
    if len(np.unique(y)) < 2 or len(np.unique(score)) < 2:
        return 0.5
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc) if folded else auc


def out_of_fold_auc(x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """ROC AUC of a logistic regression on features ``x`` ``(N, F)``, each row scored by a model fitted on
    the other folds (``splits``: train/test index pairs)."""
    score = np.zeros(len(y))
    for train, test in splits:
        if len(np.unique(y[train])) < 2:
            score[test] = y[train].mean()
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on separable (i.e. leaking) tags
            model = LogisticRegression(C=1.0, max_iter=500).fit(x[train], y[train])
        score[test] = model.predict_proba(x[test])[:, 1]
    return _auc(y, score)


def grouped_folds(frame: pd.DataFrame, y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, grouped by ``frame['group']`` when there are enough groups (chips of one group are
    never split between fitting and scoring)."""
    k = int(min(folds, np.bincount(y, minlength=2).min()))
    if "group" in frame.columns and frame["group"].nunique() >= k:
        groups = frame["group"].astype(str).to_numpy()
        return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, groups))
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y))


def tag_leakage(frame: pd.DataFrame, categorical: list[str], numeric: list[str], max_auc: float = 0.9,
                folds: int = 5, seed: int = 0) -> dict:
    """The leakage report of ``frame`` (needs ``target``; tag columns it lacks count as never known)."""
    y = frame["target"].astype(int).to_numpy()
    schema = TagSchema.fit(frame.assign(**{c: pd.NA for c in (*categorical, *numeric) if c not in frame.columns}),
                           categorical, numeric, min_count=1)
    report: dict = {"rows": int(len(y)), "landslide": int(y.sum()), "non_landslide": int(len(y) - y.sum()),
                    "max_auc": max_auc, "columns": {}, "combined_auc": None, "leaks": []}
    if min(report["landslide"], report["non_landslide"]) < 2:
        report["verdict"] = "not checked: each class needs at least 2 rows"
        return report
    splits = grouped_folds(frame, y, folds, seed)
    report["folds"] = len(splits)
    for col in schema.columns:
        part = TagSchema({col: schema.categorical[col]} if col in schema.categorical else {},
                         {col: schema.numeric[col]} if col in schema.numeric else {})
        known = part.known(frame)[col]
        entry = {"known_landslide": float(known[y == 1].mean()), "known_non_landslide": float(known[y == 0].mean()),
                 "presence_auc": _auc(y, known.astype(float), folded=True),
                 "value_auc": out_of_fold_auc(_features(part, frame), y, splits)}
        report["columns"][col] = entry
        for kind in ("presence", "value"):
            if entry[f"{kind}_auc"] >= max_auc:
                report["leaks"].append({"column": col, "kind": kind, "auc": entry[f"{kind}_auc"]})
    report["combined_auc"] = out_of_fold_auc(_features(schema, frame), y, splits)
    if report["combined_auc"] >= max_auc and not report["leaks"]:
        report["leaks"].append({"column": "<all tags>", "kind": "combined", "auc": report["combined_auc"]})
    report["verdict"] = _verdict(report)
    return report


def _verdict(report: dict) -> str:
    if not report["leaks"]:
        return (f"no leak: tags alone reach out-of-fold ROC AUC {report['combined_auc']:.3f} "
                f"(< {report['max_auc']:g}).")
    parts = []
    for leak in report["leaks"]:
        col = report["columns"].get(leak["column"])
        if leak["kind"] == "presence":
            parts.append(f"{leak['column']} is known for {col['known_landslide']:.0%} of landslide and "
                         f"{col['known_non_landslide']:.0%} of non-landslide rows (presence AUC {leak['auc']:.3f})")
        elif leak["kind"] == "value":
            parts.append(f"{leak['column']}'s values alone reach out-of-fold AUC {leak['auc']:.3f}")
        else:
            parts.append(f"all tags together reach out-of-fold AUC {leak['auc']:.3f}")
    return "; ".join(parts) + f" (limit {report['max_auc']:g})."


def leakage_lines(report: dict | None) -> list[str]:
    """Markdown lines for reports."""
    if not report:
        return []
    lines = [f"**Verdict**: {report.get('verdict', 'n/a')}", "",
             "| tag | known (landslide) | known (non-landslide) | presence AUC | value AUC |", "|---|---|---|---|---|"]
    for col, e in report.get("columns", {}).items():
        lines.append(f"| {col} | {e['known_landslide']:.1%} | {e['known_non_landslide']:.1%} | "
                     f"{e['presence_auc']:.3f} | {e['value_auc']:.3f} |")
    combined = report.get("combined_auc")
    if combined is not None and not math.isnan(combined):
        lines += ["", f"All tags together: out-of-fold ROC AUC {combined:.3f} ({report.get('folds')} folds, "
                      f"{report['rows']} rows of the training split)."]
    return lines
