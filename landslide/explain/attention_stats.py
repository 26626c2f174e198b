"""Where does the model look? Share of Grad-CAM mass in the corners, border strips and centre.

The image is cut into a 3x3 grid. Regions: the four corner cells, the four border strips (top row,
bottom row, left column, right column; each strip contains two corners) and the centre cell. A heat map
spread evenly gives 1/9 ≈ 0.111 to each cell and 1/3 to each strip; ``enrichment`` divides a share by that
even share, so 2.0 means twice the attention an even map would give. The study noted that its errors
attend to the top-right corner: compare ``top_right`` for FP/FN against TP/TN.
"""

from __future__ import annotations

import numpy as np

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
