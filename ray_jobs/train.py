"""Distributed fine-tuning with Ray Train, over the library's training engine.

    ray job submit --working-dir . -- python -m ray_jobs.train --config configs/lite0.yaml \
        [--storage-path gs://bucket/runs] [--set train.epochs=5]

The same config runs without a cluster (``landslide train --config``) or on a local Ray instance (this
module without ``ray job submit``). Every experiment kind of ``landslide.experiments`` works: each
variant becomes one TorchTrainer whose Ray run folder is the variant's ``output_dir``.

Per worker: the library prepares data and model (``prepare_run``), Ray wraps the model in DDP, a
DistributedSampler shards the data, and ``Trainer.fit`` trains. After each epoch rank 0 reports the metrics
and a checkpoint (``model.safetensors`` + ``model_card.json`` + resumable ``train_state/``) to Ray, which
keeps the best ones by ``train.monitor`` plus the latest. A failed worker group restarts from the latest
checkpoint (``ray.max_failures``); a re-submitted job with the same output folder resumes from Ray's
snapshot there, and variants that already finished are never re-run. Rank 0 then picks the threshold on
validation data, writes ``model/`` and evaluates on the test split.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from landslide import storage
from landslide.config import RunConfig, load_config, parse_config, parse_set
from landslide.errors import LandslideError
from landslide.training.engine import monitor_mode
from landslide.training.summary import RunSummary
from landslide.experiments.plan import plan
from landslide.experiments.report import format_summary
from landslide.experiments.runner import run_experiment
from ray_jobs.common import check_resources, connect, job_parser, ray_storage, run_main

STATE_SUBDIR = "state"


class RayTrainingFailed(LandslideError):
    """A Ray Train run failed after its retries."""


def _per_worker(cfg: RunConfig) -> dict[str, float]:
    res = dict(cfg.ray.resources_per_worker)
    res.setdefault("CPU", 1.0)
    if cfg.ray.use_gpu:
        res.setdefault("GPU", 1.0)
    return res


def _jsonable(metrics: dict) -> dict:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, (int, float)):
            out[key] = value
    return out


def train_loop_per_worker(config: dict) -> None:
    """One Ray Train worker: the library's prepare_run -> Trainer.fit -> (rank 0) finish_run."""
    import ray.train
    import ray.train.torch
    from torch.utils.data.distributed import DistributedSampler

    from landslide.models.checkpoint import make_card, save_checkpoint
    from landslide.training.engine import Trainer, describe_epoch
    from landslide.training.run import card_extras, finish_run, prepare_run

    cfg = parse_config(config["config"], "ray worker config")
    cfg.train.progress = False  # one log line per epoch instead of progress bars in `ray job logs`
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    run = prepare_run(cfg, write_files=rank == 0)
    device = ray.train.torch.get_device()

    local = tempfile.mkdtemp(prefix=f"landslide-rank{rank}-")
    try:  # the worker-local copy of the state goes when the worker is done (checkpoints are in storage)
        state_dir = os.path.join(local, STATE_SUBDIR)
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(state_dir)
            print(f"[rank {rank}] resuming from checkpoint {checkpoint.path}", flush=True)
        model = ray.train.torch.prepare_model(run.model)

        train_ds_sampler = run.train_sampler(num_replicas=world, rank=rank, distributed=True)
        train_loader = run.loader(run.train, True, cfg.train.seed, train_ds_sampler)
        val_loader = None
        if len(run.val):
            val_sampler = DistributedSampler(range(len(run.val)), num_replicas=world, rank=rank, shuffle=False)
            val_loader = run.loader(run.val, False, 0, val_sampler)

        def report(epoch: int, metrics: dict, trainer: Trainer) -> None:
            metrics = _jsonable(metrics)
            metrics.setdefault(cfg.train.monitor, trainer.score(metrics))
            ckpt = None
            if rank == 0:
                raw = trainer.raw_model()
                card = make_card(raw, run.image_size, name=cfg.name, freezing=run.freezing,
                                 init_from=cfg.train.init_from, training={"epoch": epoch, "metrics": metrics,
                                                                          "world_size": world}, **card_extras(run))
                save_checkpoint(raw, card, state_dir)
                ckpt = ray.train.Checkpoint.from_directory(state_dir)
                print(f"[{cfg.name}] {describe_epoch(metrics, cfg.train.epochs)}", flush=True)
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"checkpoint_epoch_{epoch + 1:03d}")

        trainer = run.trainer(device, state_dir, [report], model=model, save_state=rank == 0)
        result = trainer.fit(train_loader, val_loader, set_epoch=train_ds_sampler.set_epoch)
        if rank == 0:
            finish_run(run, result, device, extra={"world_size": world})
    finally:
        shutil.rmtree(local, ignore_errors=True)


def preflight(cfg: RunConfig) -> None:
    """Everything that can fail before a worker starts: data, weights, storage, cluster resources."""
    from landslide.data.splits import get_split, restrict_regions
    from landslide.models.segmentation import check_input_size
    from landslide.training.run import (check_confounds, check_leakage, check_segmentation_data, fit_tags, make_model,
                                        prepare_data)

    storage.check_writable(cfg.output_dir)
    seen_data: dict = {}
    seen_tags, seen_models, seen_confounds = set(), set(), set()
    for variant in plan(cfg):
        v = variant.cfg
        key = (v.data.train, v.data.val, v.data.test, v.data.split.model_dump_json())
        if key not in seen_data:
            seen_data[key] = prepare_data(v)
        data = seen_data[key]
        if v.data.train_regions:  # a region the data lacks fails here, not after the workers start
            data = restrict_regions(data, v.data.train_regions)
        confound_key = (key, tuple(v.data.train_regions or ()), v.data.max_confound_auc)
        if v.data.confounds == "error" and confound_key not in seen_confounds:
            seen_confounds.add(confound_key)  # so does a confounded training split
            check_confounds(v, get_split(data, "train"))
        tags_key = (key, v.model.tags.model_dump_json() if v.model.tags else None)
        if v.model.tags is not None and tags_key not in seen_tags:
            seen_tags.add(tags_key)  # tag columns and leakage fail here, not after the workers start
            train = get_split(seen_data[key], "train")
            fit_tags(v, train)
            check_leakage(v, train)
        if v.model.task == "segmentation":  # masks and an input size the encoder takes, before workers start
            check_segmentation_data(v, get_split(data, "train"))
        model_key = (v.model.task, v.model.architecture, v.model.backbone, v.model.pretrained)
        if v.train.init_from is None and model_key not in seen_models:
            seen_models.add(model_key)
            model, _ = make_model(v)
            if v.model.task == "segmentation":
                check_input_size(v.model.image_size or model.spec.input_size)
        check_resources(v.ray.num_workers, _per_worker(v), v.ray.wait_for_resources)


def train_on_ray(cfg: RunConfig) -> dict:
    """Fit one run config with a TorchTrainer; returns the run summary rank 0 wrote."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage_path, filesystem = ray_storage(storage.parent(cfg.output_dir))
    name = os.path.basename(cfg.output_dir.rstrip("/"))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                     resources_per_worker=_per_worker(cfg)),
        run_config=RayRunConfig(
            name=name, storage_path=storage_path, storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.ray.checkpoints_to_keep,
                                               checkpoint_score_attribute=cfg.train.monitor,
                                               checkpoint_score_order=monitor_mode(cfg.train.monitor))),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps the worker's exception; report its first line, keep the files
        first = str(exc).strip().splitlines()
        raise RayTrainingFailed(f"{cfg.name}: Ray Train run failed after {cfg.ray.max_failures} retries: "
                                f"{type(exc).__name__}: {first[-1] if first else ''} (finished epochs are "
                                f"kept in {cfg.output_dir}; submit again to resume)") from exc
    uri = storage.join(cfg.output_dir, "summary.json")
    summary = RunSummary.read(uri)
    summary.ray = {"latest_checkpoint": result.checkpoint.path if result.checkpoint else None,
                      "best_checkpoints": [c.path for c, _ in (result.best_checkpoints or [])],
                      "num_workers": cfg.ray.num_workers, "use_gpu": cfg.ray.use_gpu}
    storage.write_json(uri, summary.to_json())
    return summary.to_json()


def build_parser() -> argparse.ArgumentParser:
    p = job_parser("python -m ray_jobs.train", __doc__.split("\n\n")[0], "YAML run config (path or URI)",
                   "ray.num_workers=4")
    p.add_argument("--storage-path", help="Ray storage_path (local path or gs://bucket/prefix); the run folder "
                                          "becomes STORAGE_PATH/<name>")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:

        overrides = parse_set(args.set)
        cfg = load_config(args.config, overrides)
        if args.storage_path:
            cfg = parse_config({**cfg.model_dump(mode="json"),
                                "output_dir": storage.join(args.storage_path, cfg.name)}, args.config)
        start = time.perf_counter()
        import ray

        connect(args.address)
        print(f"landslide: Ray {ray.__version__}, cluster {ray.cluster_resources()}; run folder {cfg.output_dir}",
              flush=True)
        preflight(cfg)
        print(f"landslide: preflight ok in {time.perf_counter() - start:.1f} s "
              f"({len(plan(cfg))} run(s), {cfg.ray.num_workers} worker(s) each)", flush=True)
        summary = run_experiment(cfg, train_on_ray, lambda line: print(f"landslide: {line}", flush=True))
        print(format_summary(summary), flush=True)
        return 1 if summary.get("failed") else 0

    return run_main(body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
