"""PNG plots for reports: training curves, confusion matrix, ROC and PR curves."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from landslide import storage  # noqa: E402


def _save(fig, uri: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(uri, buf.getvalue())
    return uri


def training_curves(history: list[dict], uri: str) -> str:
    """Loss and accuracy per epoch, train vs validation."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, [h.get(f"train_{key}", np.nan) for h in history], "o-", label="train")
        if any(f"val_{key}" in h for h in history):
            ax.plot(epochs, [h.get(f"val_{key}", np.nan) for h in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, uri)


def confusion_matrix(counts: dict, uri: str, title: str = "Confusion matrix") -> str:
    """2x2 matrix, rows = truth, columns = prediction."""
    mat = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(mat, cmap="Blues")
    labels = ["non_landslide", "landslide"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(mat[i, j]), ha="center", va="center",
                    color="white" if mat[i, j] > mat.max() / 2 else "black", fontsize=13)
    ax.set_title(title)
    return _save(fig, uri)


def roc_pr_curves(y: np.ndarray, p: np.ndarray, roc_uri: str, pr_uri: str, threshold: float) -> tuple[str, str]:
    """ROC and precision-recall curves with the operating point marked."""
    pred = p >= threshold
    tpr_op = pred[y == 1].mean() if (y == 1).any() else np.nan
    fpr_op = pred[y == 0].mean() if (y == 0).any() else np.nan
    prec_op = y[pred].mean() if pred.any() else np.nan
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label="ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.plot([fpr_op], [tpr_op], "ro", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    ax.set_title("ROC curve")
    _save(fig, roc_uri)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    if len(np.unique(y)) == 2:
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, label="PR")
        ax.axhline(y.mean(), ls="--", color="grey", lw=1, label="chance")
    ax.plot([tpr_op], [prec_op], "ro", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    ax.set_title("Precision-recall curve")
    _save(fig, pr_uri)
    return roc_uri, pr_uri


_CHIP_BARS = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                ("specificity", "specificity"), ("f1", "F1"))


def _err(table, key: str) -> np.ndarray | None:
    low, high, value = table.get(f"test_{key}_low"), table.get(f"test_{key}_high"), table.get(f"test_{key}")
    if low is None or high is None or value is None:
        return None
    low, high, value = (np.asarray(x, dtype=float) for x in (low, high, value))
    if np.isnan(low).all():
        return None
    return np.vstack([np.nan_to_num(value - low), np.nan_to_num(high - value)])


def metric_bars(table, uri: str, title: str, metrics: tuple[tuple[str, str], ...] | None = None) -> str:
    """Grouped bars: test metrics (``(key, label)`` pairs, default the classifier's) per variant, with bootstrap
    intervals as error bars."""
    shown = metrics or _CHIP_BARS
    names = [str(v) for v in table["variant"]]
    x = np.arange(len(names))
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.2))
    for i, (key, label) in enumerate(shown):
        values = np.asarray(table[f"test_{key}"], dtype=float)
        ax.bar(x + (i - (len(shown) - 1) / 2) * width, values, width, yerr=_err(table, key), capsize=2,
               label=label)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test metric")
    ax.set_title(title, pad=28)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=len(shown), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _save(fig, uri)


def metric_lines(table, x_key: str, group_key: str | None, uri: str, xlabel: str, title: str,
                 metrics: tuple[tuple[str, str], ...] | None = None) -> str:
    """Each test metric (``(key, label)`` pairs, default the classifier's) against ``x_key`` (one panel per
    metric, one line per group, each point with its interval)."""
    shown = metrics or _CHIP_BARS
    groups = [(None, table)] if group_key is None else list(table.groupby(group_key))
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), sharey=True)
    for ax, (key, label) in zip(axes, shown):
        for name, part in groups:
            part = part.sort_values(x_key)
            xs = np.asarray(part[x_key], dtype=float)
            ys = np.asarray(part[f"test_{key}"], dtype=float)
            low, high = part.get(f"test_{key}_low"), part.get(f"test_{key}_high")
            err = None
            if low is not None and high is not None:  # error bars: visible at a single point, too
                err = np.clip([ys - np.asarray(low, dtype=float), np.asarray(high, dtype=float) - ys], 0, None)
                err = np.nan_to_num(err)
            ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, label=str(name) if name is not None else label)
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test metric (with interval)")
    axes[0].set_ylim(0, 1.05)
    if group_key is not None:
        axes[0].legend(fontsize=8)
    fig.suptitle(title, y=1.04)
    return _save(fig, uri)


def attention_bars(summary: dict, uri: str) -> str:
    """Grad-CAM share per region and outcome, as enrichment over an even map (1 = even), with intervals."""
    from landslide.explain.attention_stats import EVEN_SHARE, SUMMARY_REGIONS

    outcomes = [o for o in ("TP", "TN", "FP", "FN", "correct", "errors") if o in summary["outcomes"]]
    x = np.arange(len(SUMMARY_REGIONS))
    width = 0.8 / max(len(outcomes), 1)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for i, name in enumerate(outcomes):
        entry = summary["outcomes"][name]
        vals = np.array([entry[r]["mean"] / EVEN_SHARE[r] for r in SUMMARY_REGIONS])
        ci = [entry[r]["interval"] for r in SUMMARY_REGIONS]
        err = np.array([[vals[j] - c[0] / EVEN_SHARE[r], c[1] / EVEN_SHARE[r] - vals[j]] if c else [0, 0]
                        for j, (c, r) in enumerate(zip(ci, SUMMARY_REGIONS))]).T
        ax.bar(x + (i - (len(outcomes) - 1) / 2) * width, vals, width, yerr=np.clip(err, 0, None), capsize=2,
               label=f"{name} (n={entry['n']})")
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.set_xticks(x, SUMMARY_REGIONS)
    ax.set_ylabel("share / even share")
    ax.set_title("Where the model looks, by outcome (Grad-CAM)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    return _save(fig, uri)
