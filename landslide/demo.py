"""``landslide demo``: synthetic data -> transfer learning from offline ImageNet weights -> evaluation ->
Grad-CAM galleries and report -> a sweep of a synthetic region into an inventory -> a footprint model whose
polygons are scored against the true synthetic footprints, in a few minutes on 2 CPU cores with no network."""

from __future__ import annotations

from landslide import storage
import pandas as pd

from landslide.config import SweepConfig, parse_config
from landslide.data.synthetic import SYNTHETIC_NOTE, generate_dataset, generate_region
from landslide.inventory.sweep import run_sweep
from landslide.training.run import run_training


def demo_config(data_manifest: str, out_dir: str, quick: bool = False, seed: int = 0) -> dict:
    """The demo's run config (also a worked example of the config format)."""
    return {
        "name": "demo-lite0-synthetic",
        "output_dir": storage.join(out_dir, "run"),
        "data": {"train": data_manifest, "split": {"method": "group", "val_fraction": 0.2, "test_fraction": 0.2,
                                                    "seed": seed}},
        "model": {"backbone": "tf_efficientnet_lite0", "pretrained": "offline", "image_size": 128,
                  "freeze": {"strategy": "last_blocks", "n": 3}},
        "train": {"epochs": 2 if quick else 6, "batch_size": 32, "lr": 1e-3, "seed": seed,
                  "early_stopping_patience": 3, "max_steps_per_epoch": 2 if quick else None},
        "eval": {"bootstrap": 200 if quick else 1000, "cam_max_images": 16 if quick else 96, "gallery_size": 8},
    }


def demo_sweep_config(model_dir: str, region: dict, out_dir: str) -> dict:
    """The demo's sweep config: the trained model over the synthetic region's XYZ tiles."""
    return {"name": "demo-sweep-synthetic", "model": model_dir,
            "tiles": {"source": region["xyz"], "zoom": region["zoom"], "scheme": "xyz"},
            "region": {"bbox": region["bbox"]},
            "output": storage.join(out_dir, "sweep"), "batch_size": 16, "shard_size": 16}


def run_demo_sweep(model_dir: str, out_dir: str, seed: int = 0, quick: bool = False) -> dict:
    """Sweep a synthetic region (XYZ tiles) with a trained model; score the inventory against the truth."""
    region_dir = storage.join(out_dir, "region")
    truth_uri = storage.join(region_dir, "truth.csv")
    cols, rows = (4, 3) if quick else (8, 6)
    region = generate_region(region_dir, cols, rows, seed=seed + 100)
    cfg = parse_config(demo_sweep_config(model_dir, region, out_dir), "demo sweep", schema=SweepConfig)
    summary = run_sweep(cfg)
    with storage.open_uri(truth_uri) as fh:
        truth = pd.read_csv(fh)
    with storage.open_uri(storage.join(cfg.output, "inventory.parquet")) as fh:
        found = pd.read_parquet(fh, columns=["tile_id", "label"])
    joined = truth.merge(found, on="tile_id", suffixes=("_true", "_pred"))
    summary["agreement_with_truth"] = float((joined["label_true"] == joined["label_pred"]).mean())
    summary["output"] = cfg.output
    return summary


def demo_footprint_config(data_manifest: str, out_dir: str, quick: bool = False, seed: int = 0) -> dict:
    """The demo's footprint model: a U-Net on MobileNetV2 (offline ImageNet weights) on the same chips and
    split as the classifier, against the chips' true synthetic footprints."""
    return {
        "name": "demo-footprints-synthetic",
        "output_dir": storage.join(out_dir, "footprints", "run"),
        "data": {"train": data_manifest, "split": {"method": "group", "val_fraction": 0.2, "test_fraction": 0.2,
                                                    "seed": seed}},
        "model": {"task": "segmentation", "architecture": "unet", "backbone": "mobilenetv2_100",
                  "pretrained": "offline", "image_size": 128},
        "train": {"epochs": 2 if quick else 6, "batch_size": 16, "lr": 1e-3, "seed": seed, "monitor": "val_iou",
                  "max_steps_per_epoch": 2 if quick else None},
        "eval": {"bootstrap": 200 if quick else 1000, "gallery_size": 8},
    }


def chip_transform(lat: float, lon: float, size: int, gsd_m: float):
    """The affine pixel -> lon/lat transform of a synthetic chip centred on (``lat``, ``lon``), ``size`` pixels
    of ``gsd_m`` metres (the spherical approximation of :func:`landslide.data.synthetic.generate_dataset`)."""
    import math

    from rasterio.transform import from_bounds

    half_lat = size * gsd_m / 2 / 111_320.0
    half_lon = half_lat / math.cos(math.radians(lat))
    return from_bounds(lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat, size, size)


def run_demo_footprints(manifest: str, out_dir: str, seed: int = 0, quick: bool = False) -> dict:
    """Train the demo's footprint model, then draw the footprints of its held-out test chips as polygons in the
    fictitious region (``footprints/footprints.geojson``, beside ``truth.geojson``) and score them against the
    true footprints: polygon IoU (intersection over union of all predicted and all true footprints, in each
    chip's pixel frame) and the run's pixel/object metrics with intervals (``run/eval/report.md``)."""
    import numpy as np
    import shapely

    from landslide.data import manifest as manifest_lib
    from landslide.data.images import read_image
    from landslide.data.masks import read_mask
    from landslide.data.synthetic import METRES_PER_PIXEL
    from landslide.inference.footprints import FootprintPredictor
    from landslide.inventory import geo
    from landslide.inventory.footprints import trace, vectorize

    cfg = parse_config(demo_footprint_config(manifest, out_dir, quick, seed), source="demo footprints")
    summary = run_training(cfg)
    predictor = FootprintPredictor(summary["model_dir"], device="cpu")
    splits = manifest_lib.load(storage.join(cfg.output_dir, "splits.csv"))
    test = splits.frame[splits.frame["split"] == "test"]
    predicted, truth = [], []
    inter = union = 0.0
    for _, row in test.iterrows():
        image = read_image(row["uri"])
        h, w = image.shape[:2]
        transform = chip_transform(float(row["lat"]), float(row["lon"]), w, METRES_PER_PIXEL)
        mask_uri = row.get("mask_uri")
        true_mask = read_mask(mask_uri) if isinstance(mask_uri, str) else np.zeros((h, w), bool)
        out = predictor.footprints(predictor.prepare(image), h, w, transform=transform, crs="EPSG:4326")
        chip = row["uri"].rsplit("/", 1)[-1]
        true_parts = vectorize(true_mask.astype(np.float32), transform, "EPSG:4326", 0.5)
        pred_px = shapely.union_all([f["pixel_geometry"] for f in out["footprints"]])
        true_px = shapely.union_all([f["geometry"] for f in trace(true_mask.astype(np.float32), 0.5)])
        inter += shapely.intersection(pred_px, true_px).area
        union += shapely.union(pred_px, true_px).area
        predicted += [geo.feature(f["geometry_wgs84"], {
            "chip": chip, "area_m2": f["area_m2"], "mean_probability": f["mean_probability"],
            "max_probability": f["max_probability"], "model_name": predictor.info["name"],
            "model_version": predictor.info["version"], "synthetic": True}) for f in out["footprints"]]
        truth += [geo.feature(f["geometry_wgs84"], {"chip": chip, "area_m2": f["area_m2"], "synthetic": True})
                  for f in true_parts]
    folder = storage.join(out_dir, "footprints")
    storage.write_json(storage.join(folder, "footprints.geojson"),
                       geo.feature_collection(predicted, name="demo footprints (SYNTHETIC)"))
    storage.write_json(storage.join(folder, "truth.geojson"),
                       geo.feature_collection(truth, name="true footprints (SYNTHETIC)"))
    result = {"note": SYNTHETIC_NOTE, "test_chips": int(len(test)), "predicted_footprints": len(predicted),
              "true_footprints": len(truth), "polygon_iou": inter / union if union else float("nan"),
              "pixel_iou": summary["test_metrics"].get("pixel_iou"), "model_dir": summary["model_dir"],
              "report": storage.join(cfg.output_dir, "eval", "report.md"), "output": folder}
    storage.write_json(storage.join(folder, "summary.json"), result)
    return result


def demo_footprint_sweep_config(model_dir: str, scene: str, out_dir: str) -> dict:
    """The demo's footprint sweep: the footprint model over the synthetic region's GeoTIFF."""
    return {"name": "demo-footprint-sweep-synthetic", "model": model_dir, "tiles": {"source": scene},
            "output": storage.join(out_dir, "footprints", "sweep"), "batch_size": 16,
            "footprints": {"overlap": 0.25, "simplify_m": 0.0}}


def run_demo_footprint_sweep(model_dir: str, out_dir: str) -> dict:
    """Sweep the synthetic region's GeoTIFF with the footprint model and score the polygon inventory against the
    region's true footprints: polygon IoU (the union of all predicted footprints against the union of all true
    ones, in the scene's CRS) and how many true footprints a predicted one overlaps by IoU >= 0.5."""
    import io

    import numpy as np
    import shapely

    from landslide.config import SweepConfig
    from landslide.data.masks import read_mask
    from landslide.inventory.footprints import trace
    from landslide.inventory.tiles import open_raster

    region_dir = storage.join(out_dir, "region")
    scene, truth_uri = storage.join(region_dir, "region.tif"), storage.join(region_dir, "truth", "footprints_mask.png")
    cfg = parse_config(demo_footprint_sweep_config(model_dir, scene, out_dir), "demo footprint sweep",
                       schema=SweepConfig)
    summary = run_sweep(cfg)
    with open_raster(scene) as ds:  # the truth is on the scene's pixel grid
        transform = ds.transform
    true = [f["geometry"] for f in trace(read_mask(truth_uri).astype(np.float32), 0.5, transform)]
    table = pd.read_parquet(io.BytesIO(storage.read_bytes(
        storage.join(cfg.output, "scenes", "region.footprints.parquet"))))
    found = list(shapely.from_wkb(table["geometry"].to_numpy())) if len(table) else []
    pred_union, true_union = shapely.union_all(found), shapely.union_all(true)
    union = shapely.union(pred_union, true_union).area
    iou = shapely.intersection(pred_union, true_union).area / union if union else float("nan")
    tree = shapely.STRtree(found) if found else None
    matched = 0
    for t in true:
        for j in (tree.query(t, predicate="intersects") if tree is not None else []):
            f = found[int(j)]
            if shapely.intersection(f, t).area / shapely.union(f, t).area >= 0.5:
                matched += 1
                break
    return {"output": cfg.output, "footprints": summary["footprints"], "true_footprints": len(true),
            "polygon_iou": iou, "true_found_at_iou_0_5": matched, "area_m2": summary["area_m2"]}


def run_demo(out_dir: str, seed: int = 0, quick: bool = False, n_per_class: int | None = None) -> dict:
    """Generate the data, train, evaluate, explain; return the run summary plus paths."""
    n = n_per_class or (24 if quick else 160)
    manifest = storage.join(out_dir, "data", "manifest.csv")
    if not storage.exists(manifest) or "mask_path" not in storage.read_text(manifest).split("\n", 1)[0]:
        # (again for a demo folder from before the chips had true footprints: same seed, same chips)
        manifest = generate_dataset(storage.join(out_dir, "data"), n_per_class=n, size=128, seed=seed)
    cfg = parse_config(demo_config(manifest, out_dir, quick, seed), source="demo")
    summary = run_training(cfg)
    summary["data"] = manifest
    summary["note"] = SYNTHETIC_NOTE
    summary["sweep"] = run_demo_sweep(summary["model_dir"], out_dir, seed, quick)
    summary["footprints"] = run_demo_footprints(manifest, out_dir, seed, quick)
    summary["footprints"]["sweep"] = run_demo_footprint_sweep(summary["footprints"]["model_dir"], out_dir)
    return summary
