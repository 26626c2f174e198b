"""Binary classification metrics (positive class = landslide), bootstrap intervals and threshold choice."""

from __future__ import annotations

import math

import numpy as np

from landslide.errors import ConfigError

POINT_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "balanced_accuracy")
RANK_METRICS = ("roc_auc", "pr_auc")


def confusion(y: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """TP/FP/FN/TN counts."""
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    return {"tp": int(((y == 1) & (pred == 1)).sum()), "fp": int(((y == 0) & (pred == 1)).sum()),
            "fn": int(((y == 1) & (pred == 0)).sum()), "tn": int(((y == 0) & (pred == 0)).sum())}


def _from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Every metric of :data:`POINT_METRICS` from one confusion matrix (:func:`_from_count_arrays` on scalars)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = _from_count_arrays(*(np.float64(c) for c in (tp, fp, fn, tn)))
    return {k: float(v) for k, v in values.items()}


def _rank(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {"roc_auc": math.nan, "pr_auc": math.nan}
    from sklearn.metrics import average_precision_score, roc_auc_score  # lazily: sweeps' actors import this module

    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p))}


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """Point metrics at ``threshold`` (predict landslide when p >= threshold), AUCs and the confusion matrix."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    counts = confusion(y, p >= threshold)
    out = {**_from_counts(**counts), **_rank(y, p), "confusion": counts, "threshold": float(threshold),
           "n": int(len(y)), "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    return out


def bootstrap_intervals(y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (resampling images with replacement) for every metric."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    if n_boot <= 0 or len(y) == 0:
        return {}
    return _intervals(y, (p >= threshold).astype(int), p, None, n_boot, confidence, seed)


def _intervals(y: np.ndarray, pred: np.ndarray, p: np.ndarray, groups: np.ndarray | None, n_boot: int,
               confidence: float, seed: int) -> dict[str, list[float]]:
    """Percentile intervals of every metric over (group-)bootstrap resamples of given decisions."""
    samples = resample_metrics(y, pred, p, resample_counts(groups, len(y), n_boot, seed))
    return {k: interval for k, v in samples.items()
            if (interval := _percentile_interval(v, n_boot, confidence)) is not None}


def _percentile_interval(values: np.ndarray, n_boot: int, confidence: float) -> list[float] | None:
    """Percentile interval of the non-NaN bootstrap ``values``; None when fewer than max(10, n_boot / 10)
    resamples gave a value (e.g. AUCs of resamples holding one class)."""
    v = values[~np.isnan(values)]
    if len(v) < max(10, n_boot // 10):
        return None
    alpha = (1 - confidence) / 2
    return [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))]


def resample_counts(groups: np.ndarray | None, n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each row is drawn in each resample of :func:`cluster_bootstrap`: shape (n_boot, n), int32.

    A resample's metrics equal the metrics of the rows weighted by these counts (a row drawn twice counts
    twice), which is what lets :func:`resample_metrics` score every resample at once.
    """
    inverse, n_groups, draws = _group_draws(groups, n, n_boot, seed)
    rows = [np.bincount(drawn, minlength=n_groups).astype(np.int32)[inverse] for drawn in draws]
    return np.stack(rows) if rows else np.zeros((0, n), np.int32)


def resample_metrics(y: np.ndarray, pred: np.ndarray, p: np.ndarray, counts: np.ndarray,
                     chunk_cells: int = 4_000_000) -> dict[str, np.ndarray]:
    """Every metric of :data:`POINT_METRICS` and :data:`RANK_METRICS` for each resample given by ``counts``
    (shape (n_boot, n): row multiplicities, :func:`resample_counts`), vectorised: shape (n_boot,) each, NaN
    where undefined (as :func:`binary_metrics`: e.g. AUCs of a resample with one class).

    Equal to scikit-learn's ``roc_auc_score`` and ``average_precision_score`` (and :func:`binary_metrics`) on
    the resampled rows ``y[idx]``, ``p[idx]``, ties included (tests/test_evaluation.py checks it): ROC AUC is the
    trapezoidal area under the ROC curve, average precision sum_k (R_k - R_k-1) P_k over the distinct scores
    in decreasing order, both from weighted cumulative true and false positive counts as in scikit-learn's
    ``_binary_clf_curve``. scikit-learn itself costs ~4 ms per resample in input checks; this costs ~20 µs.
    Resamples are scored ``chunk_cells / n`` at a time, so memory stays at a few ``chunk_cells`` floats.
    """
    y, pred, p = np.asarray(y).astype(int), np.asarray(pred).astype(int), np.asarray(p, dtype=float)
    counts = np.asarray(counts)
    n_boot, n = counts.shape
    out = {k: np.full(n_boot, math.nan) for k in (*POINT_METRICS, *RANK_METRICS)}
    if n == 0 or n_boot == 0:
        return out
    order = np.argsort(-p, kind="mergesort")
    ys, scores = y[order].astype(float), p[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), n - 1]  # the last row of each distinct score
    masks = {"tp": (y == 1) & (pred == 1), "fp": (y == 0) & (pred == 1), "fn": (y == 1) & (pred == 0),
             "tn": (y == 0) & (pred == 0)}
    step = max(1, chunk_cells // n)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo in range(0, n_boot, step):
            w = counts[lo:lo + step].astype(float)
            point = _from_count_arrays(**{k: w @ m.astype(float) for k, m in masks.items()})
            ws = w[:, order]
            tps = np.cumsum(ws * ys, axis=1)[:, ends]
            fps = np.cumsum(ws * (1.0 - ys), axis=1)[:, ends]
            pos, neg = tps[:, -1:], fps[:, -1:]
            tpr, fpr = tps / pos, fps / neg
            zero = np.zeros((len(w), 1))
            tpr0, fpr0 = np.hstack([zero, tpr]), np.hstack([zero, fpr])
            auc = np.sum(np.diff(fpr0, axis=1) * (tpr0[:, 1:] + tpr0[:, :-1]) / 2, axis=1)
            precision = np.nan_to_num(tps / (tps + fps))  # 0/0 only where nothing was drawn: no recall step
            ap = np.sum(np.diff(tpr0, axis=1) * precision, axis=1)
            defined = (pos[:, 0] > 0) & (neg[:, 0] > 0)
            point["roc_auc"] = np.where(defined, auc, math.nan)
            point["pr_auc"] = np.where(defined, ap, math.nan)
            for key, values in point.items():
                out[key][lo:lo + step] = values
    return out


def _from_count_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Point metrics from (arrays of) confusion counts as floats: NaN where a ratio is 0/0 (no row of its
    denominator), MCC 0 where undefined; the caller silences numpy's 0/0 warnings."""
    precision, recall, specificity = tp / (tp + fp), tp / (tp + fn), tn / (tn + fp)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"accuracy": (tp + tn) / (tp + fp + fn + tn), "precision": precision, "recall": recall,
            "specificity": specificity, "f1": 2 * tp / (2 * tp + fp + fn),
            "mcc": np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0),
            "balanced_accuracy": (recall + specificity) / 2}


def pooled_metrics(y: np.ndarray, pred: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None,
                   n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Metrics of pooled out-of-fold predictions (each run's decisions at its own validation threshold, so
    ``pred`` is given, not derived from ``p``), with percentile intervals from a *cluster* bootstrap that
    resamples whole groups: neighbouring chips of one group are not independent evidence."""
    y, pred, p = np.asarray(y).astype(int), np.asarray(pred).astype(int), np.asarray(p, dtype=float)
    counts = confusion(y, pred)
    out = {**_from_counts(**counts), **_rank(y, p), "confusion": counts, "n": int(len(y)),
           "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    out["groups"] = int(len(np.unique(groups))) if groups is not None else int(len(y))
    out["intervals"] = _intervals(y, pred, p, groups, n_boot, confidence, seed)
    out["confidence"], out["bootstrap"] = confidence, n_boot
    return out


def _group_draws(groups: np.ndarray | None, n: int, n_boot: int, seed: int):
    """(row -> group index, number of groups, iterator of each resample's drawn group indices)."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    return inverse.ravel(), len(uniq), (rng.integers(0, len(uniq), len(uniq)) for _ in range(n_boot if n else 0))


def cluster_bootstrap(groups: np.ndarray | None, n: int, n_boot: int, seed: int):
    """Index arrays of a bootstrap that resamples whole groups (single rows when ``groups`` is None)."""
    inverse, n_groups, draws = _group_draws(groups, n, n_boot, seed)
    order = np.argsort(inverse, kind="stable")  # rows grouped, ascending within each group
    members = np.split(order, np.cumsum(np.bincount(inverse, minlength=n_groups))[:-1])
    for drawn in draws:
        yield drawn if groups is None else np.concatenate([members[g] for g in drawn])


def paired_pooled_difference(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, groups: np.ndarray | None = None,
                             n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                             keys: tuple[str, ...] = ("accuracy", "f1", "mcc")) -> dict[str, dict]:
    """Metric of decisions A minus decisions B on the same pooled images (e.g. with and without test-time
    augmentation, each fold at its own thresholds), with a paired group-bootstrap interval."""
    y, pred_a, pred_b = (np.asarray(a).astype(int) for a in (y, pred_a, pred_b))

    def values(idx: np.ndarray) -> dict[str, float]:
        a, b = _from_counts(**confusion(y[idx], pred_a[idx])), _from_counts(**confusion(y[idx], pred_b[idx]))
        return {k: a[k] - b[k] for k in keys}

    return paired_bootstrap(values, len(y), keys, groups, n_boot, confidence, seed)


def paired_bootstrap(values, n: int, keys: tuple[str, ...], groups: np.ndarray | None, n_boot: int, confidence: float,
            seed: int) -> dict[str, dict]:
    """Point differences ``values(all rows)`` (a dict per key) and percentile intervals over (group-)bootstrap
    resamples; ``significant``: the interval excludes 0. NaN values of a resample are left out."""
    point = values(np.arange(n))
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for idx in cluster_bootstrap(groups, n, n_boot, seed):
        for key, value in values(idx).items():
            if not math.isnan(value):
                samples[key].append(value)
    alpha = (1 - confidence) / 2
    out = {}
    for key in keys:
        interval = None
        if len(samples[key]) >= max(10, n_boot // 10):
            interval = [float(np.quantile(samples[key], alpha)), float(np.quantile(samples[key], 1 - alpha))]
        out[key] = {"difference": point[key], "interval": interval,
                    "significant": bool(interval and (interval[0] > 0 or interval[1] < 0))}
    return out


def across_runs(values: list[float], confidence: float = 0.95) -> dict:
    """Mean, standard deviation and Student-t interval of the mean of one metric over repeated runs (seeds or
    folds). The interval describes run-to-run variation; with 2-3 runs it is wide, as it should be."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return {"n": 0, "mean": None, "std": None, "interval": None}
    mean = float(v.mean())
    if len(v) == 1:
        return {"n": 1, "mean": mean, "std": None, "interval": None}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * std / math.sqrt(len(v)))
    return {"n": int(len(v)), "mean": mean, "std": std, "interval": [mean - half, mean + half]}


def choose_threshold(y: np.ndarray, p: np.ndarray, method: str = "f1", fixed: float = 0.5) -> float:
    """Decision threshold from validation data: max F1, max Youden's J, or a fixed value."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    if method == "fixed" or len(np.unique(y)) < 2:
        return float(fixed)
    if method == "youden":
        from sklearn.metrics import roc_curve

        fpr, tpr, thr = roc_curve(y, p)
        finite = np.isfinite(thr)
        best = np.argmax((tpr - fpr)[finite])
        return float(np.clip(thr[finite][best], 1e-6, 1 - 1e-6))
    if method != "f1":
        raise ConfigError(f"eval.threshold={method!r}: choose f1, youden or fixed")
    candidates = np.unique(p)
    best_t, best_f1 = fixed, -1.0
    for t in candidates:
        f1 = _from_counts(**confusion(y, p >= t))["f1"]
        if not math.isnan(f1) and f1 > best_f1:
            best_t, best_f1 = float(t), f1
    # place the threshold halfway to the next lower score, so it generalises rather than sitting on a sample
    lower = candidates[candidates < best_t]
    return float((best_t + lower.max()) / 2) if len(lower) else float(best_t)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities rescaled by temperature scaling: ``sigmoid(logit(p) / T)``. The order of the
    probabilities is kept, so a threshold ``t`` maps to ``apply_temperature(t, T)`` with the same decisions."""
    return 1.0 / (1.0 + np.exp(-_logit(p) / float(temperature)))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The temperature ``T`` in [0.05, 20] minimising the negative log-likelihood of ``sigmoid(logit(p) / T)``
    on labels ``y`` (temperature scaling, Guo et al. 2017, "On calibration of modern neural networks"); fit it
    on validation data. 1.0 when ``y`` has one class."""
    from scipy.optimize import minimize_scalar

    y, z = np.asarray(y).astype(float), _logit(p)
    if len(np.unique(y)) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), 1e-12, 1 - 1e-12)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded").x))


def calibration_metrics(y: np.ndarray, p: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Expected calibration error (``ece``: mean |observed landslide rate - mean probability| over ``bins``
    equal-width probability bins, weighted by their counts; Naeini et al. 2015) and the Brier score (mean
    squared error of the probability), both 0 for perfect calibration."""
    y, p = np.asarray(y).astype(float), np.asarray(p, dtype=float)
    if not len(y):
        return {"ece": math.nan, "brier": math.nan}
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(abs(y[which == b].mean() - p[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    return {"ece": float(ece), "brier": float(((p - y) ** 2).mean())}


def estimate_prior(p: np.ndarray, train_prior: float, max_iter: int = 200, tol: float = 1e-6) -> float:
    """The landslide share of an *unlabelled* set, estimated by EM from the model's (calibrated) probabilities
    ``p`` and the training share ``train_prior`` (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs
    of a classifier to new a priori probabilities"). No label is used."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    pi0 = float(np.clip(train_prior, 1e-6, 1 - 1e-6))
    prior = pi0
    for _ in range(max_iter):
        w1, w0 = prior / pi0, (1 - prior) / (1 - pi0)
        adjusted = w1 * p / (w1 * p + w0 * (1 - p))
        new = float(adjusted.mean())
        if abs(new - prior) < tol:
            return new
        prior = new
    return prior


def prior_adjusted_threshold(threshold: float, train_prior: float, target_prior: float) -> float:
    """The threshold on the unadjusted probability that gives the decisions of ``threshold`` on probabilities
    adjusted from ``train_prior`` to ``target_prior`` (Bayes' rule on the odds)."""
    pi0 = float(np.clip(train_prior, 1e-6, 1 - 1e-6))
    pi1 = float(np.clip(target_prior, 1e-6, 1 - 1e-6))
    t = float(np.clip(threshold, 1e-6, 1 - 1e-6))
    odds = t / (1 - t) * ((1 - pi1) / (1 - pi0)) / (pi1 / pi0)
    return odds / (1 + odds)


def prior_shift_threshold(p: np.ndarray, threshold: float, train_prior: float, temperature: float = 1.0
                          ) -> tuple[float, float]:
    """(estimated landslide share of the unlabelled set, threshold on the model's raw probabilities ``p``): EM
    (:func:`estimate_prior`) on ``p`` calibrated with ``temperature``, ``threshold`` moved from
    ``train_prior`` to the estimate (:func:`prior_adjusted_threshold`) on the calibrated scale and mapped back."""
    prior = estimate_prior(apply_temperature(p, temperature), train_prior)
    adjusted = prior_adjusted_threshold(float(apply_temperature(threshold, temperature)), train_prior, prior)
    return prior, float(apply_temperature(adjusted, 1.0 / temperature))


THRESHOLD_RULES = ("fixed", "f1", "youden")
"""Ways to choose the decision threshold on validation data (:func:`choose_threshold`)."""


def threshold_rules(y: np.ndarray, p: np.ndarray, fixed: float = 0.5) -> dict[str, float]:
    """The threshold each rule of :data:`THRESHOLD_RULES` chooses on validation labels ``y`` and
    probabilities ``p``: the fixed value, F1-max, Youden's J (Youden 1950) max."""
    return {rule: choose_threshold(y, p, rule, fixed) for rule in THRESHOLD_RULES}


def evaluate_predictions(y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> dict:
    """Metrics plus their intervals, JSON-able."""
    out = binary_metrics(y, p, threshold)
    out["intervals"] = bootstrap_intervals(y, p, threshold, n_boot, confidence, seed)
    out["confidence"] = confidence
    out["bootstrap"] = n_boot
    return out


def outcome(y: int, pred: int) -> str:
    """TP/FP/FN/TN of one prediction."""
    return {(1, 1): "TP", (0, 1): "FP", (1, 0): "FN", (0, 0): "TN"}[(int(y), int(pred))]


def paired_difference(y: np.ndarray, p_a: np.ndarray, threshold_a: float, p_b: np.ndarray, threshold_b: float,
                      n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                      keys: tuple[str, ...] = ("accuracy", "f1", "mcc", "roc_auc")) -> dict[str, dict]:
    """Metric of A minus metric of B on the same images, with a paired bootstrap interval (the same resampled
    images for both), e.g. multi-modal vs image-only. ``significant``: the interval excludes 0."""
    y = np.asarray(y).astype(int)
    p_a, p_b = np.asarray(p_a, dtype=float), np.asarray(p_b, dtype=float)
    a = binary_metrics(y, p_a, threshold_a)
    b = binary_metrics(y, p_b, threshold_b)
    counts = resample_counts(None, len(y), n_boot, seed)
    sa = resample_metrics(y, (p_a >= threshold_a).astype(int), p_a, counts)
    sb = resample_metrics(y, (p_b >= threshold_b).astype(int), p_b, counts)
    out = {}
    for key in keys:
        interval = _percentile_interval(sa[key] - sb[key], n_boot, confidence)
        out[key] = {"difference": a[key] - b[key], "interval": interval,
                    "significant": bool(interval and (interval[0] > 0 or interval[1] < 0))}
    return out


def multiclass_metrics(y: np.ndarray, pred: np.ndarray, classes: list[str] | tuple[str, ...], n_boot: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> dict:
    """Accuracy, macro F1 (with bootstrap intervals), per-class precision/recall/F1/support, the confusion matrix
    (rows: true, columns: predicted) and the majority-class baseline accuracy, e.g. for the size head."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    labels = list(range(len(classes)))
    n = len(y)
    out: dict = {"n": int(n), "classes": list(classes)}
    if n == 0:
        return {**out, "accuracy": math.nan, "macro_f1": math.nan, "per_class": {}, "confusion": [],
                "majority_baseline_accuracy": math.nan, "intervals": {}}

    def scores(idx: np.ndarray) -> dict[str, float]:
        return {"accuracy": float((y[idx] == pred[idx]).mean()),
                "macro_f1": float(f1_score(y[idx], pred[idx], labels=sorted(set(y[idx])), average="macro",
                                           zero_division=0))}

    out.update(scores(np.arange(n)))
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    out["per_class"] = {c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                            "support": int(support[i])} for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), int)
    np.add.at(matrix, (y, pred), 1)
    out["confusion"] = matrix.tolist()
    out["majority_baseline_accuracy"] = float(np.bincount(y, minlength=len(classes)).max() / n)
    rng = np.random.default_rng(seed)
    samples = {"accuracy": [], "macro_f1": []}
    for _ in range(n_boot):
        for key, value in scores(rng.integers(0, n, n)).items():
            samples[key].append(value)
    alpha = (1 - confidence) / 2
    out["intervals"] = {k: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))]
                        for k, v in samples.items() if v}
    return out
