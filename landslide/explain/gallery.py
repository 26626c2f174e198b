"""Galleries of overlays, one folder and one contact sheet per outcome: Grad-CAM of chip classifications
(TP/FP/FN/TN) and outlines of footprints (true and predicted)."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw

from landslide import storage
from landslide.data.images import encode_png

OUTCOMES = ("TP", "FP", "FN", "TN")


def contact_sheet(tiles: list[np.ndarray], captions: list[str], columns: int = 4, tile: int = 160) -> np.ndarray:
    """A grid of captioned images."""
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (arr, caption) in enumerate(zip(tiles, captions)):
        r, c = divmod(i, columns)
        sheet.paste(Image.fromarray(arr).resize((tile, tile)), (c * tile, r * (tile + 16)))
        draw.text((c * tile + 3, r * (tile + 16) + tile + 2), caption[:26], fill="black")
    return np.asarray(sheet)


def write_galleries(out_dir: str, items: list[dict], per_outcome: int = 12,
                    outcomes: tuple[str, ...] = OUTCOMES) -> dict[str, dict]:
    """Write overlays for up to ``per_outcome`` items of each outcome, one folder and one contact sheet each.

    Each item: {outcome, overlay (uint8 RGB), probability, uri}, optionally ``rank`` (lower first; default the
    most confident first: distance of the probability from 0.5) and ``label`` (caption and file name;
    default ``p=<probability>``). Returns, per outcome, its count, the sheet and the files.
    """
    result: dict[str, dict] = {}
    for name in outcomes:
        chosen = [it for it in items if it["outcome"] == name]
        chosen.sort(key=lambda it: it.get("rank", -abs(it["probability"] - 0.5)))
        chosen = chosen[:per_outcome]
        files = []
        for k, it in enumerate(chosen):
            stem = os.path.splitext(os.path.basename(it["uri"]))[0]
            label = it.get("label") or f"p={it['probability']:.2f}"
            rel = f"{name}/{k:03d}_{stem}_{label.replace('=', '').replace(' ', '_')}.png"
            storage.write_bytes(storage.join(out_dir, rel), encode_png(it["overlay"]))
            files.append(rel)
        sheet_rel = None
        if chosen:
            sheet = contact_sheet([it["overlay"] for it in chosen],
                                  [f"{it.get('label') or 'p=%.2f' % it['probability']} {os.path.basename(it['uri'])}"
                                   for it in chosen])
            sheet_rel = f"{name}_sheet.png"
            storage.write_bytes(storage.join(out_dir, sheet_rel), encode_png(sheet))
        result[name] = {"count": sum(1 for it in items if it["outcome"] == name), "shown": len(chosen),
                        "sheet": sheet_rel, "files": files}
    return result


TRUE_OUTLINE = (0, 255, 255)
"""Cyan: the true footprint's outline in footprint galleries."""
PREDICTED_OUTLINE = (255, 0, 255)
"""Magenta: the predicted footprint's outline."""


def outline_overlay(rgb01: np.ndarray, true_mask: np.ndarray, pred_mask: np.ndarray, scale: int = 2) -> np.ndarray:
    """The image (``(H, W, 3)`` floats in [0, 1]) enlarged ``scale`` times, with the outlines (1 px at that
    scale) of the true footprint in :data:`TRUE_OUTLINE` and the predicted one in :data:`PREDICTED_OUTLINE`,
    drawn over it (prediction on top) -> uint8 ``(H*scale, W*scale, 3)``. Masks are ``(H, W)`` booleans."""
    from scipy.ndimage import binary_erosion

    h, w = true_mask.shape
    image = Image.fromarray((np.clip(rgb01, 0, 1) * 255).astype(np.uint8)).resize((w * scale, h * scale),
                                                                                   Image.BILINEAR)
    out = np.array(image)
    for mask, colour in ((true_mask, TRUE_OUTLINE), (pred_mask, PREDICTED_OUTLINE)):
        big = np.kron(np.asarray(mask, bool), np.ones((scale, scale), bool))
        edge = big & ~binary_erosion(big, border_value=0)
        out[edge] = colour
    return out
