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
