"""Tagged manifests of the real Baige UAV chips for the multi-modal experiments
(``configs/experiments/baige_tags_join.yaml`` and ``baige_tags_study.yaml``; results in docs/multimodal.md).

    python scripts/baige_tags.py [--data ../shared/data] [--out runs/baige-tags]

Writes into ``--out``:

- ``joined.csv``: the chips with approximate coordinates (the scene centre from the data's SOURCE.md plus each
  chip's pixel offset at 0.5 m/px, north up: the chips carry no georeference) tagged with the nearest event of
  the real NASA GLC export within 100 km, exactly as ``landslide catalog join`` tags chips;
- ``study.csv``: the study's protocol: every landslide chip gets the tags of a GLC event drawn at random, no
  other chip gets any (the tags leak the label by construction).

Both add ``cover_class``, the share of the chip the landslide mask covers (small < 0.25 <= medium < 0.6 <=
large), a real, image-grounded target for the size head. Nothing here is committed: the data stays in
``../shared/data``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import pandas as pd

from landslide.data.catalog import TAG_COLUMNS, join_chips, load_catalog

CENTRE = (31.08, 98.70)  # Baige landslide, Jinsha River (SOURCE.md: ~31.1 N, 98.7 E)
METRES_PER_PIXEL = 0.5
CHIP = 128


def chips(data: str) -> pd.DataFrame:
    """labels.csv with absolute image paths, approximate lat/lon and the cover class."""
    root = os.path.join(data, "baige_uav")
    frame = pd.read_csv(os.path.join(root, "labels.csv"))
    frame["path"] = [os.path.abspath(os.path.join(root, p)) for p in frame["path"]]
    # offsets from the middle of each scene, in metres
    dy = (frame["row"] + CHIP / 2 - frame.groupby("scene")["row"].transform("max") / 2) * METRES_PER_PIXEL
    dx = (frame["col"] + CHIP / 2 - frame.groupby("scene")["col"].transform("max") / 2) * METRES_PER_PIXEL
    frame["lat"] = CENTRE[0] - dy / 111_320.0
    frame["lon"] = CENTRE[1] + dx / (111_320.0 * math.cos(math.radians(CENTRE[0])))
    frame["cover_class"] = pd.cut(frame["landslide_fraction"], [0.05, 0.25, 0.6, 1.01], right=False,
                                  labels=["small", "medium", "large"]).astype(object)
    frame.loc[frame["label"] != "landslide", "cover_class"] = None
    return frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join("..", "shared", "data"))
    p.add_argument("--out", default=os.path.join("runs", "baige-tags"))
    p.add_argument("--radius-km", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "baige_uav", "labels.csv")):
        print(f"no Baige data under {args.data}/baige_uav (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    catalog = load_catalog(os.path.join(args.data, "nasa_glc", "Global_Landslide_Catalog_Export.csv"))
    frame = chips(args.data)

    joined = join_chips(frame, catalog, args.radius_km)
    joined.to_csv(os.path.join(args.out, "joined.csv"), index=False)
    matched = joined["glc_event_id"].notna()
    print(f"joined.csv: {int(matched.sum())} of {len(joined)} chips tagged "
          f"(events {sorted(joined.loc[matched, 'glc_event_id'].unique())}, "
          f"{joined['glc_distance_km'].min():.1f}-{joined['glc_distance_km'].max():.1f} km away)")

    rng = np.random.default_rng(args.seed)
    study = frame.copy()
    slide = (study["label"] == "landslide").to_numpy()
    events = catalog.frame.iloc[rng.integers(0, len(catalog.frame), len(study))].reset_index(drop=True)
    for tag in TAG_COLUMNS:
        study[f"glc_{tag}"] = events[tag].where(slide, None).to_numpy()
    study.to_csv(os.path.join(args.out, "study.csv"), index=False)
    print(f"study.csv: tags of random GLC events on all {int(slide.sum())} landslide chips, none on the "
          f"{int((~slide).sum())} others")
    return 0


if __name__ == "__main__":
    sys.exit(main())
