"""``landslide demo``: synthetic data -> transfer learning from offline ImageNet weights -> evaluation ->
Grad-CAM galleries and report -> a sweep of a synthetic region into an inventory, in a few minutes on 2 CPU
cores with no network."""

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


def run_demo(out_dir: str, seed: int = 0, quick: bool = False, n_per_class: int | None = None) -> dict:
    """Generate the data, train, evaluate, explain; return the run summary plus paths."""
    n = n_per_class or (24 if quick else 160)
    manifest = storage.join(out_dir, "data", "manifest.csv")
    if not storage.exists(manifest):
        manifest = generate_dataset(storage.join(out_dir, "data"), n_per_class=n, size=128, seed=seed)
    cfg = parse_config(demo_config(manifest, out_dir, quick, seed), source="demo")
    summary = run_training(cfg)
    summary["data"] = manifest
    summary["note"] = SYNTHETIC_NOTE
    summary["sweep"] = run_demo_sweep(summary["model_dir"], out_dir, seed, quick)
    return summary
