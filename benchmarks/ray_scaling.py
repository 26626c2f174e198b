"""Training throughput with Ray Train: 1 vs 2 workers (DDP over gloo on CPU, NCCL on GPU), and the same
config trained in one plain process without Ray, all in one run on one machine.

Images/s is the training throughput of the last epoch (the first one pays start-up costs), summed over
workers. On a 2-core machine two workers compete for the same cores: expect no speed-up there; the
benchmark reports what it measures.

    python benchmarks/ray_scaling.py [--workers 1 2] [--backbone tf_efficientnet_lite0] [--image-size 128]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import data_manifest, write_result
from landslide.config import parse_config
from landslide.training.run import run_training


def _config(manifest: str, out: Path, args, workers: int):
    return parse_config({
        "name": f"w{workers}", "output_dir": str(out),
        "data": {"train": manifest, "split": {"method": "stratified", "val_fraction": 0.1, "test_fraction": 0.1}},
        "model": {"backbone": args.backbone, "pretrained": "none", "image_size": args.image_size,
                  "freeze": {"strategy": "all"}},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "progress": False,
                  "early_stopping_patience": None, "max_steps_per_epoch": args.steps},
        "eval": {"bootstrap": 0, "cam_max_images": 0},
        "ray": {"num_workers": workers, "use_gpu": args.gpu},
    })


def _last_epoch(summary_dir: Path) -> dict:
    import json

    return json.loads((summary_dir / "history.json").read_text())[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="per worker")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="cap steps per epoch")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(argv)

    import ray

    from ray_jobs.train import train_on_ray

    work = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    manifest, data_desc = data_manifest(work)
    arms = {}
    local = _config(manifest, work / "local", args, 1)
    run_training(local, evaluate=False)
    last = _last_epoch(work / "local")
    arms["local_process"] = {"images_per_s": last["train_images_per_s"], "epoch_seconds": last["train_seconds"]}
    ray.init(num_cpus=max(args.workers) if not args.gpu else None, log_to_driver=False)
    for workers in args.workers:
        out = work / f"ray-{workers}"
        train_on_ray(_config(manifest, out, args, workers))
        last = _last_epoch(out)
        arms[f"ray_{workers}_workers"] = {"images_per_s": last["train_images_per_s"],
                                          "epoch_seconds": last["train_seconds"]}
    ray.shutdown()
    base = arms.get("ray_1_workers", {}).get("images_per_s")
    for name, arm in arms.items():
        arm["relative_to_ray_1_worker"] = arm["images_per_s"] / base if base else None
    result = {"data": data_desc, "backbone": args.backbone, "image_size": args.image_size,
              "batch_size_per_worker": args.batch_size, "epochs": args.epochs, "arms": arms,
              "note": "images/s of the last epoch, all workers together; Ray gives each worker "
                      "OMP_NUM_THREADS = its CPUs (1), the local process uses all cores"}
    write_result("ray_scaling", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
