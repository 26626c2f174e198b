"""A whole training run from a RunConfig: data -> splits -> model -> fit -> threshold -> checkpoint -> evaluation.

Run folder layout (``cfg.output_dir``)::

    config.yaml            the resolved config
    splits.csv             every sample with its split (train/val/test/excluded) and group
    train_state/           resumable state (re-running the same config resumes here)
    history.json           per-epoch metrics
    skipped_images.json    images that could not be read, with reasons
    model/                 model.safetensors + model_card.json (best epoch, validation threshold)
    eval/                  metrics.json, report.md, plots, Grad-CAM galleries (test split)
    summary.json
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from landslide import storage
from landslide.config import RunConfig, dump_config
from landslide.data import manifest as manifest_lib
from landslide.data.dataset import ChipDataset, collate_skip_bad
from landslide.data.manifest import Manifest
from landslide.data.splits import assign_splits, get_split, limit_training, split_summary
from landslide.data.transforms import BatchAugment, build_transform
from landslide.errors import ConfigError, DataError
from landslide.evaluation.evaluate import evaluate_model, predict_manifest
from landslide.evaluation.metrics import binary_metrics, choose_threshold
from landslide.models.checkpoint import load_checkpoint, make_card, save_checkpoint
from landslide.models.classifier import LandslideClassifier, build_model
from landslide.models.freezing import apply_freezing, parameter_layers
from landslide.training.engine import FitResult, Trainer, describe_epoch, resolve_device

log = logging.getLogger(__name__)


def prepare_data(cfg: RunConfig) -> Manifest:
    """Load the data and attach train/val/test splits (separate val/test sources are used as given)."""
    data = cfg.data
    train = manifest_lib.load(data.train)
    if data.val or data.test:
        parts = [train.frame.assign(split="train")]
        for name, source in (("val", data.val), ("test", data.test)):
            if source:
                parts.append(manifest_lib.load(source).frame.assign(split=name))
        import pandas as pd
        frame = pd.concat(parts, ignore_index=True)
        return Manifest(frame, data.train, train.skipped, train.skipped_examples)
    method = data.split.method
    if method == "auto":
        cols = set(train.frame.columns)
        if "split" in cols and train.frame["split"].notna().all():
            method = "predefined"
        elif "group" in cols:
            method = "group"
        elif {"lat", "lon"} <= cols:
            method = "spatial"
        else:
            method = "stratified"
    return assign_splits(train, method, data.split.val_fraction, data.split.test_fraction, data.split.seed,
                         data.split.block_size_m, data.split.buffer_m)


def make_model(cfg: RunConfig) -> tuple[LandslideClassifier, dict | None]:
    """Build the model, or load it from ``train.init_from`` (weight transfer); apply the freezing strategy."""
    if cfg.train.init_from:
        model, card = load_checkpoint(cfg.train.init_from)
        if model.spec.name != cfg.model.backbone:
            raise ConfigError(f"train.init_from={cfg.train.init_from} holds a {model.spec.name!r} model but "
                              f"model.backbone is {cfg.model.backbone!r}")
        return model, card
    return build_model(cfg.model.backbone, cfg.model.pretrained, cfg.model.dropout), None


def make_loader(manifest: Manifest, transform, cfg: RunConfig, shuffle: bool, seed: int,
                sampler=None) -> DataLoader:
    """A loader of ``collate_skip_bad`` batches; with a (distributed) ``sampler`` it does no shuffling itself."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(ChipDataset(manifest, transform, cfg.data.max_image_pixels), batch_size=cfg.train.batch_size,
                      shuffle=shuffle and sampler is None, sampler=sampler, num_workers=cfg.data.num_workers,
                      collate_fn=collate_skip_bad, generator=generator, persistent_workers=False)


@dataclass
class PreparedRun:
    """Everything a training run needs before the first epoch; shared by local runs and Ray Train workers."""

    cfg: RunConfig
    data: Manifest
    train: Manifest
    val: Manifest
    test: Manifest
    model: LandslideClassifier
    image_size: int
    freezing: dict
    transform: object
    """Per image: resize + normalise (training, validation and test alike)."""
    augment: BatchAugment
    """Per batch, on the training device: flips, rotations, colour jitter."""
    pos_weight: float | None
    start_time: float = field(default_factory=time.perf_counter)


def prepare_run(cfg: RunConfig, write_files: bool = True) -> PreparedRun:
    """Load data and splits, build the model and apply freezing; ``write_files`` writes config and splits."""
    start = time.perf_counter()
    out = cfg.output_dir
    if write_files:
        storage.makedirs(out)
        storage.write_text(storage.join(out, "config.yaml"), dump_config(cfg))
    torch.manual_seed(cfg.train.seed)
    data = prepare_data(cfg)
    if cfg.data.train_fraction < 1 or cfg.data.train_filter:
        data = limit_training(data, cfg.data.train_fraction, cfg.data.train_filter, cfg.data.split.seed)
    if write_files:
        storage.write_text(storage.join(out, "splits.csv"),
                           data.frame[[c for c in ("uri", "label", "target", "split", "group") if c in data.frame]]
                           .to_csv(index=False))
    train_m, val_m, test_m = (get_split(data, s) for s in ("train", "val", "test"))
    counts = train_m.class_counts()
    if min(counts.values()) == 0:
        raise DataError(f"{cfg.data.train}: the training split has no "
                        f"{'landslide' if counts['landslide'] == 0 else 'non_landslide'} images "
                        f"(class counts {counts}); both classes are needed")

    model, init_card = make_model(cfg)
    image_size = cfg.model.image_size or (init_card["input_size"] if init_card else model.spec.input_size)
    freezing = apply_freezing(model, cfg.model.freeze.strategy, cfg.model.freeze.n)
    log.info("trainable parameters: %d of %d (%s)", freezing["trainable_params"], freezing["total_params"],
             cfg.model.freeze.strategy)
    spec = model.spec
    aug = cfg.train.augment
    augment = BatchAugment(spec.mean, spec.std, flips=aug.flips, rot90=aug.rot90, color_jitter=aug.color_jitter,
                           hue=aug.hue)
    transform = build_transform(image_size, spec.mean, spec.std)
    pos_weight = counts["non_landslide"] / counts["landslide"] if cfg.train.class_weighting == "balanced" else None
    return PreparedRun(cfg, data, train_m, val_m, test_m, model, image_size, freezing, transform, augment,
                       pos_weight, start)


def finish_run(run: PreparedRun, result: FitResult, device: torch.device, evaluate: bool = True,
               extra: dict | None = None) -> dict:
    """After fitting: best weights, validation threshold, model checkpoint, test evaluation, summary.json
    (with ``extra`` entries added, e.g. the number of distributed workers)."""
    cfg, model, out = run.cfg, run.model, run.cfg.output_dir
    model.load_state_dict(result.best_state)
    storage.write_json(storage.join(out, "history.json"), result.history)
    storage.write_json(storage.join(out, "skipped_images.json"),
                       {"during_training": result.skipped_images, "at_load": run.data.skipped_examples,
                        "at_load_counts": dict(run.data.skipped)})

    splits = split_summary(run.data)
    card = make_card(model, run.image_size, name=cfg.name, freezing=run.freezing, init_from=cfg.train.init_from,
                     training={"data": run.data.summary(), "splits": splits, "epochs_run": len(result.history),
                               "best_epoch": result.best_epoch, "monitor": cfg.train.monitor,
                               "stopped_early": result.stopped_early, "seed": cfg.train.seed,
                               "split_method": cfg.data.split.method, "history": result.history})
    threshold_info = {"method": "fixed", "value": cfg.eval.fixed_threshold}
    if len(run.val):
        vpreds, _ = predict_manifest(model, card, run.val, cfg.train.batch_size, device, cfg.data.num_workers,
                                     cfg.data.max_image_pixels)
        if len(vpreds):
            t = choose_threshold(vpreds["target"].to_numpy(), vpreds["probability"].to_numpy(), cfg.eval.threshold,
                                 cfg.eval.fixed_threshold)
            threshold_info = {"method": cfg.eval.threshold, "value": t, "chosen_on": "validation",
                              "validation_metrics": binary_metrics(vpreds["target"], vpreds["probability"], t)}
    card["threshold"] = float(threshold_info["value"])
    card["threshold_selection"] = threshold_info
    model_dir = storage.join(out, "model")
    # saved before the test evaluation so a failure there never loses the trained model; the card is
    # rewritten with the test metrics afterwards
    save_checkpoint(model, card, model_dir)

    best = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
    epoch_speed = [h["train_images_per_s"] for h in result.history if h.get("train_images_per_s")]
    summary = {"name": cfg.name, "output_dir": out, "model_dir": model_dir, "backbone": model.spec.name,
               "image_size": run.image_size, "best_epoch": result.best_epoch,
               "epochs_run": len(result.history), "resumed_from_epoch": result.resumed_from_epoch,
               "threshold": card["threshold"], "trainable_params": run.freezing["trainable_params"],
               "total_params": run.freezing["total_params"], "freeze": {"strategy": run.freezing["strategy"],
                                                                        "n": run.freezing["n"]},
               "model_size_mb": storage.size(storage.join(model_dir, "model.safetensors")) / 1e6,
               "depth": len(parameter_layers(model)),
               "train_images": len(run.train), "skipped_images": len(result.skipped_images),
               "best_epoch_metrics": {k: v for k, v in best.items() if isinstance(v, (int, float))},
               "train_images_per_s": float(sum(epoch_speed) / len(epoch_speed)) if epoch_speed else None,
               "splits": splits}
    if evaluate and len(run.test):
        metrics = evaluate_model(model, card, run.test, storage.join(out, "eval"), cfg.eval, result.history,
                                 device, cfg.train.batch_size, cfg.data.num_workers, cfg.train.seed,
                                 title=f"{cfg.name}: test split",
                                 extra_report={"data": cfg.data.train, "split method": cfg.data.split.method})
        summary["test_metrics"] = {k: metrics[k] for k in ("accuracy", "precision", "recall", "specificity", "f1",
                                                           "mcc", "roc_auc", "pr_auc")}
        summary["test_intervals"] = metrics.get("intervals", {})
        summary["test_images"] = int(metrics.get("n", len(run.test)))
        if metrics.get("images_per_s"):
            summary["inference_images_per_s"] = metrics["images_per_s"]
        card["metrics"] = {"test": summary["test_metrics"], "test_intervals": summary["test_intervals"]}
        storage.write_json(storage.join(model_dir, "model_card.json"), card)
    summary["seconds"] = time.perf_counter() - run.start_time
    summary.update(extra or {})
    storage.write_json(storage.join(out, "summary.json"), summary)
    return summary


def run_training(cfg: RunConfig, evaluate: bool = True) -> dict:
    """Train locally (one process), pick the threshold on validation data, save the model, evaluate on test."""
    run = prepare_run(cfg)
    device = resolve_device(cfg.train.device)
    trainer = Trainer(run.model, cfg.train, device=device, pos_weight=run.pos_weight, state_dir=cfg.output_dir,
                      augment=run.augment,
                      callbacks=[lambda epoch, metrics, _: log.info("%s", describe_epoch(metrics, cfg.train.epochs))])
    result = trainer.fit(make_loader(run.train, run.transform, cfg, True, cfg.train.seed),
                         make_loader(run.val, run.transform, cfg, False, 0) if len(run.val) else None)
    return finish_run(run, result, device, evaluate)
