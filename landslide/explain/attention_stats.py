"""Where does the model look? Share of Grad-CAM mass in the corners, border strips and centre.

The image is cut into a 3x3 grid. Regions: the four corner cells, the four border strips (top row,
bottom row, left column, right column; each strip contains two corners) and the centre cell. A heat map
spread evenly gives 1/9 ≈ 0.111 to each cell and 1/3 to each strip; ``enrichment`` divides a share by that
even share, so 2.0 means twice the attention an even map would give. The study noted that its errors
attend to the top-right corner: compare ``top_right`` for FP/FN against TP/TN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "top", "bottom", "left", "right", "centre")
UNIFORM_SHARE = {**{r: 1 / 9 for r in ("top_left", "top_right", "bottom_left", "bottom_right", "centre")},
                 **{r: 1 / 3 for r in ("top", "bottom", "left", "right")}}


def region_shares(cam: np.ndarray) -> dict[str, float]:
    """Fraction of total heat-map mass in each region (NaN-free; an all-zero map counts as even)."""
    cam = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float64)), 0, None)
    h, w = cam.shape
    total = cam.sum()
    if total <= 0:
        return dict(UNIFORM_SHARE)
    r1, r2 = round(h / 3), round(2 * h / 3)
    c1, c2 = round(w / 3), round(2 * w / 3)

    def share(a: np.ndarray) -> float:
        return float(a.sum() / total)

    return {
        "top_left": share(cam[:r1, :c1]), "top_right": share(cam[:r1, c2:]),
        "bottom_left": share(cam[r2:, :c1]), "bottom_right": share(cam[r2:, c2:]),
        "top": share(cam[:r1]), "bottom": share(cam[r2:]), "left": share(cam[:, :c1]), "right": share(cam[:, c2:]),
        "centre": share(cam[r1:r2, c1:c2]),
    }


def aggregate(shares: list[dict[str, float]], outcomes: list[str]) -> dict[str, dict]:
    """Mean share, its standard error and enrichment per outcome (TP/FP/FN/TN, plus 'errors' and 'correct')."""
    groups: dict[str, list[dict]] = {}
    for s, o in zip(shares, outcomes):
        groups.setdefault(o, []).append(s)
        groups.setdefault("errors" if o in ("FP", "FN") else "correct", []).append(s)
    out = {}
    for name, items in groups.items():
        entry: dict = {"n": len(items)}
        for region in REGIONS:
            vals = np.array([it[region] for it in items])
            mean = float(vals.mean())
            entry[region] = {"mean": mean, "sem": float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1
                             else float("nan"), "enrichment": mean / UNIFORM_SHARE[region]}
        out[name] = entry
    return out


def dominant_region(shares: dict[str, float]) -> str:
    """The cell (corner or centre) holding the most mass relative to an even map."""
    cells = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")
    return max(cells, key=lambda r: shares[r] / UNIFORM_SHARE[r])


def with_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-image shares plus ``corners`` (the four corner cells together; even map 4/9) and ``border`` (all but
    the centre cell; even map 8/9)."""
    return frame.assign(corners=frame[["top_left", "top_right", "bottom_left", "bottom_right"]].sum(axis=1),
                        border=1.0 - frame["centre"])


SUMMARY_REGIONS = ("top_right", "top_left", "bottom_left", "bottom_right", "corners", "border", "centre")
EVEN_SHARE = {**UNIFORM_SHARE, "corners": 4 / 9, "border": 8 / 9}


def summarise(frame: pd.DataFrame, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Pooled per-image shares (columns: outcome, group, the regions) -> per outcome (TP/FP/FN/TN, errors,
    correct) the mean share of each region with a group-bootstrap interval, and errors minus correct for each
    region: the study's "errors look at the top-right corner" as a measured difference."""
    from landslide.evaluation.metrics import cluster_bootstrap, paired_bootstrap

    frame = with_totals(frame)
    frame = frame.assign(kind=np.where(frame["outcome"].isin(["FP", "FN"]), "errors", "correct"))
    alpha = (1 - confidence) / 2

    def interval(values: list[float]) -> list[float] | None:
        return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))] if len(values) >= 10 else None

    regions = list(SUMMARY_REGIONS)
    out: dict = {"outcomes": {}, "errors_minus_correct": {}, "even_share": EVEN_SHARE, "images": int(len(frame))}
    for name, part in [*frame.groupby("outcome"), *frame.groupby("kind")]:
        values = part[regions].to_numpy(dtype=float)
        groups = part["group"].to_numpy() if "group" in part else None
        boots = np.array([values[idx].mean(0) for idx in cluster_bootstrap(groups, len(part), n_boot, seed)])
        entry: dict = {"n": int(len(part))}
        for j, region in enumerate(regions):
            mean = float(values[:, j].mean())
            entry[region] = {"mean": mean, "interval": interval(list(boots[:, j])) if len(boots) else None,
                             "enrichment": mean / EVEN_SHARE[region]}
        out["outcomes"][str(name)] = entry
    if {"errors", "correct"} <= set(frame["kind"]):
        values = frame[regions].to_numpy(dtype=float)
        groups = frame["group"].to_numpy() if "group" in frame else None
        err = frame["kind"].to_numpy() == "errors"

        def diff(idx: np.ndarray) -> dict[str, float]:
            e = err[idx]
            if e.all() or not e.any():
                return dict.fromkeys(regions, float("nan"))
            return dict(zip(regions, (values[idx][e].mean(0) - values[idx][~e].mean(0)).tolist()))

        out["errors_minus_correct"] = paired_bootstrap(diff, len(frame), tuple(regions), groups, n_boot, confidence,
                                                       seed)
    return out
