"""Chip labels from landslide masks, by one documented rule.

A mask is an image the size of its chip whose non-zero pixels (any channel above 127 after decoding, so
255-valued PNG masks and anti-aliased edges both read correctly; in a mask holding only 0 and 1, the 1s)
mark landslide. Its *fraction* is the share
of marked pixels, and the label follows from it:

- ``landslide`` when ``fraction >= landslide_min`` (default 0.05: at least 5% of the chip, ~820 px of a
  128-px chip: enough landslide to see);
- ``non_landslide`` when ``fraction <= clean_max`` (default 0: not one marked pixel);
- ``ambiguous`` in between: a sliver of landslide at a chip edge is honestly neither class. The manifest
  loader skips ambiguous rows and counts them; they are never guessed into a class.

``landslide labels`` applies the rule to a table of chips with a mask column and writes ``label`` and
``landslide_fraction``; the Baige chips in ``../shared/data`` carry labels made by this same rule.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from landslide import storage
from landslide.data.images import DEFAULT_MAX_PIXELS, read_image
from landslide.errors import ConfigError, DataError, ImageError

LANDSLIDE_MIN = 0.05
CLEAN_MAX = 0.0


def read_mask(uri: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The mask at ``uri`` as a ``(H, W)`` bool array, True = landslide: any channel above 127 (0/255 masks,
    anti-aliased edges), or any non-zero value in a mask whose values are only 0 and 1 (the other common
    convention, which the 127 rule would read as empty). An :class:`ImageError` names an unreadable mask."""
    values = read_image(uri, max_pixels=max_pixels).max(axis=2)
    return values > 0 if values.max() == 1 else values > 127


def mask_fraction(uri: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """Share of landslide pixels in the mask at ``uri`` (an :class:`ImageError` names an unreadable mask)."""
    return float(read_mask(uri, max_pixels).mean())


def label_for(fraction: float, landslide_min: float = LANDSLIDE_MIN, clean_max: float = CLEAN_MAX) -> str:
    """``landslide`` / ``non_landslide`` / ``ambiguous`` for a mask fraction (see the module docstring)."""
    if fraction >= landslide_min:
        return "landslide"
    if fraction <= clean_max:
        return "non_landslide"
    return "ambiguous"


def label_table(source: str, mask_column: str = "mask_path", landslide_min: float = LANDSLIDE_MIN,
                clean_max: float = CLEAN_MAX) -> tuple[pd.DataFrame, dict]:
    """The table at ``source`` with ``landslide_fraction`` and ``label`` from its masks (paths relative to the
    table's folder), and a report: counts per label and the masks that could not be read (label blank)."""
    if not 0 <= clean_max < landslide_min <= 1:
        raise ConfigError(f"mask label rule: need 0 <= clean_max ({clean_max}) < landslide_min ({landslide_min}) "
                          "<= 1")
    frame = storage.read_table(source, "chip table")
    if mask_column not in frame.columns:
        raise DataError(f"{source}: no mask column {mask_column!r} (columns: {list(frame.columns)})")
    base = storage.parent(source)
    fractions, labels, unreadable = [], [], []
    for value in frame[mask_column]:
        if value is None or pd.isna(value) or not str(value).strip():
            fractions.append(np.nan)
            labels.append(None)
            unreadable.append({"mask": None, "reason": "no mask path"})
            continue
        uri = storage.resolve(str(value), base)
        try:
            fraction = mask_fraction(uri)
        except ImageError as exc:
            fractions.append(np.nan)
            labels.append(None)
            unreadable.append({"mask": uri, "reason": str(exc)})
            continue
        fractions.append(round(fraction, 4))
        labels.append(label_for(fraction, landslide_min, clean_max))
    out = frame.assign(landslide_fraction=fractions, label=labels)
    counts = Counter(label for label in labels if label)
    report = {"rule": {"landslide_min": landslide_min, "clean_max": clean_max, "mask_column": mask_column},
              "counts": {k: int(counts.get(k, 0)) for k in ("landslide", "non_landslide", "ambiguous")},
              "unreadable": unreadable}
    return out, report
