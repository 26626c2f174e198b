"""Galleries of Grad-CAM overlays, one folder and one contact sheet per outcome (TP/FP/FN/TN)."""

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


def write_galleries(out_dir: str, items: list[dict], per_outcome: int = 12) -> dict[str, dict]:
    """Write overlays for up to ``per_outcome`` items of each outcome, the most confident first.

    Each item: {outcome, overlay (uint8 RGB), probability, uri}. Returns, per outcome, the sheet and files.
    """
    result: dict[str, dict] = {}
    for name in OUTCOMES:
        chosen = [it for it in items if it["outcome"] == name]
        # most confident mistakes / successes first: distance of p from the decision side
        chosen.sort(key=lambda it: -abs(it["probability"] - 0.5))
        chosen = chosen[:per_outcome]
        files = []
        for k, it in enumerate(chosen):
            stem = os.path.splitext(os.path.basename(it["uri"]))[0]
            rel = f"{name}/{k:03d}_{stem}_p{it['probability']:.2f}.png"
            storage.write_bytes(storage.join(out_dir, rel), encode_png(it["overlay"]))
            files.append(rel)
        sheet_rel = None
        if chosen:
            sheet = contact_sheet([it["overlay"] for it in chosen],
                                  [f"p={it['probability']:.2f} {os.path.basename(it['uri'])}" for it in chosen])
            sheet_rel = f"{name}_sheet.png"
            storage.write_bytes(storage.join(out_dir, sheet_rel), encode_png(sheet))
        result[name] = {"count": sum(1 for it in items if it["outcome"] == name), "shown": len(chosen),
                        "sheet": sheet_rel, "files": files}
    return result


