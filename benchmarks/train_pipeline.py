"""Input-pipeline overhead of training: time per step through the real data pipeline (files -> safe decode
-> transforms -> DataLoader) against the same model stepping on the same batches already in memory.

Both arms run the library's ``Trainer.train_epoch`` in one process and alternate (A B A B ...) so machine
noise hits both alike. Target: pipeline / in-memory <= 1.05.

    python benchmarks/train_pipeline.py [--backbone tf_efficientnet_lite0] [--image-size 128] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.common import data_manifest, write_result
from landslide.config import parse_config
from landslide.training.engine import Trainer
from landslide.training.run import make_loader, prepare_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of both arms")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--out", help="result JSON (default benchmarks/results/train_pipeline.json)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    manifest, data_desc = data_manifest(work)
    cfg = parse_config({
        "name": "bench", "output_dir": str(work / "run"),
        "data": {"train": manifest, "split": {"method": "stratified", "val_fraction": 0.1, "test_fraction": 0.1},
                 "num_workers": args.num_workers},
        "model": {"backbone": args.backbone, "pretrained": "none", "image_size": args.image_size,
                  "freeze": {"strategy": "all"}},
        "train": {"batch_size": args.batch_size, "max_steps_per_epoch": args.steps, "progress": False,
                  "amp": "off"},
    })
    run = prepare_run(cfg, write_files=False)
    trainer = Trainer(run.model, cfg.train, device=torch.device("cpu"), pos_weight=run.pos_weight)
    loader = make_loader(run.train, run.train_transform, cfg, True, 0)
    # the in-memory arm: exactly the batches the loader produces, decoded and transformed once up front
    memory = []
    for batch in loader:
        memory.append(batch)
        if len(memory) == args.steps:
            break
    if len(memory) < args.steps:
        raise SystemExit(f"only {len(memory)} batches of {args.batch_size} in the training split; lower --steps")

    trainer.train_epoch(memory[:1], epoch=0)  # warm-up (allocator, kernels)
    pipeline, in_memory = [], []
    for r in range(args.rounds):
        m = trainer.train_epoch(loader, epoch=r)
        pipeline.append(m["train_seconds"] / args.steps)
        m = trainer.train_epoch(memory, epoch=r)
        in_memory.append(m["train_seconds"] / args.steps)
    ratio = statistics.median(pipeline) / statistics.median(in_memory)
    result = {
        "data": data_desc, "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
        "steps": args.steps, "rounds": args.rounds, "loader_workers": args.num_workers,
        "seconds_per_step_pipeline": pipeline, "seconds_per_step_in_memory": in_memory,
        "median_pipeline_s": statistics.median(pipeline), "median_in_memory_s": statistics.median(in_memory),
        "ratio_pipeline_over_in_memory": ratio, "target_ratio": 1.05, "meets_target": ratio <= 1.05,
    }
    write_result("train_pipeline", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
