"""A whole training run from a RunConfig: data -> splits -> model -> fit -> threshold -> checkpoint -> evaluation.

Run folder layout (``cfg.output_dir``)::

    config.yaml            the resolved config
    splits.csv             every sample with its split (train/val/test/excluded) and group: a manifest
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

import pandas as pd
import torch
from torch.utils.data import DataLoader

from landslide import storage
from landslide.config import RunConfig, dump_config
from landslide.data import manifest as manifest_lib
from landslide.data.dataset import ChipDataset, SegmentationDataset, collate_skip_bad
from landslide.data.gsd import input_gsd_summary
from landslide.data.manifest import Manifest
from landslide.data.splits import assign_splits, get_split, limit_training, restrict_regions, split_summary
from landslide.data.tags import TagSchema
from landslide.data.transforms import BatchAugment, blur_kernel_size, build_transform
from landslide.errors import ConfigError, DataError
from landslide.evaluation.evaluate import evaluate_model, predict_manifest
from landslide.evaluation.footprints import choose_min_object_px, choose_pixel_threshold, evaluate_footprints
from landslide.evaluation.confounds import confound_check
from landslide.evaluation.leakage import tag_leakage
from landslide.evaluation.segmentation import summary_metrics
from landslide.evaluation.metrics import (apply_temperature, binary_metrics, calibration_metrics, choose_threshold,
                                          fit_temperature, threshold_rules)
from landslide.models.card import ModelCard
from landslide.models.checkpoint import WEIGHTS_FILE, load_checkpoint, make_card, save_checkpoint, write_card
from landslide.models.classifier import LandslideClassifier, build_model
from landslide.models.freezing import apply_freezing, parameter_layers
from landslide.models.segmentation import LandslideSegmenter, build_segmenter, check_input_size
from landslide.models.multimodal import OPTIONS as TAG_OPTIONS
from landslide.inference.device import resolve_device
from landslide.training.engine import FitResult, Trainer, describe_epoch
from landslide.training.sampling import BalancedSampler, cell_counts, sampling_cells
from landslide.training.summary import TEST_METRICS, RunSummary

log = logging.getLogger(__name__)


def prepare_data(cfg: RunConfig) -> Manifest:
    """Load the data and attach train/val/test splits (separate val/test sources are used as given)."""
    data = cfg.data
    keep = data.ambiguous == "keep"
    train = manifest_lib.load(data.train, ambiguous=keep)
    if data.val or data.test:
        parts = [train.frame.assign(split="train")]
        for name, source in (("val", data.val), ("test", data.test)):
            if source:
                parts.append(manifest_lib.load(source, ambiguous=keep).frame.assign(split=name))
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
                         data.split.block_size_m, data.split.buffer_m, data.split.folds, data.split.fold)


def fit_tags(cfg: RunConfig, train: Manifest) -> TagSchema | None:
    """The tag schema of a multi-modal run, fitted on the training split (None for image-only runs)."""
    tags = cfg.model.tags
    if tags is None:
        return None
    return TagSchema.fit(train.frame, tags.categorical, tags.numeric, tags.min_count)


def check_leakage(cfg: RunConfig, train: Manifest) -> dict | None:
    """The tag-leakage check on the training split (see landslide.evaluation.leakage); raises a DataError
    naming the leaking tags when ``model.tags.leakage`` is ``error``."""
    tags = cfg.model.tags
    if tags is None or tags.leakage == "off":
        return None
    report = tag_leakage(train.frame, tags.categorical, tags.numeric, tags.max_leakage_auc, seed=cfg.train.seed)
    if report["leaks"] and tags.leakage == "error":
        raise DataError(f"{cfg.data.train}: tags leak the label on the training split: {report['verdict']} "
                        "Tags present only for one class teach the model to read the label from the tags. "
                        "Fix the data (join tags for both classes alike) or set model.tags.leakage: warn to "
                        "train anyway (the report then says so).")
    if report["leaks"]:
        log.warning("tags leak the label on the training split (model.tags.leakage: warn, training anyway): %s",
                    report["verdict"])
    return report


def check_confounds(cfg: RunConfig, train: Manifest) -> dict | None:
    """The acquisition-confound check on the training split (:mod:`landslide.evaluation.confounds`); raises a
    DataError naming the confounding properties when ``data.confounds`` is ``error``."""
    if cfg.data.confounds == "off":
        return None
    report = confound_check(train.frame, cfg.data.max_confound_auc, seed=cfg.train.seed,
                            max_pixels=cfg.data.max_image_pixels)
    if report["confounds"] and cfg.data.confounds == "error":
        raise DataError(f"{cfg.data.train}: {report['verdict']} A model can learn these instead of landslides. "
                        "Make the classes alike (e.g. crop every chip to one size) or set data.confounds: warn "
                        "to train anyway (the report then says so).")
    if report["confounds"]:
        log.warning("training split (data.confounds: warn, training anyway): %s", report["verdict"])
    return report


def make_model(cfg: RunConfig, schema: TagSchema | None = None) -> tuple[LandslideClassifier, ModelCard | None]:
    """Build the model (multi-modal with a tag ``schema``), or load it from ``train.init_from`` (weight
    transfer: the stage-1 model's tag schema is kept); freezing is applied by the caller."""
    if cfg.model.task == "segmentation":
        return make_segmenter(cfg)
    size_classes = cfg.model.size_head.classes if cfg.model.size_head else None
    if cfg.train.init_from:
        model, card = load_checkpoint(cfg.train.init_from)
        if model.spec.name != cfg.model.backbone:
            raise ConfigError(f"train.init_from={cfg.train.init_from} holds a {model.spec.name!r} model but "
                              f"model.backbone is {cfg.model.backbone!r}")
        if (model.tag_encoder is None) != (cfg.model.tags is None):
            raise ConfigError(f"train.init_from={cfg.train.init_from} holds "
                              f"{'an image-only' if model.tag_encoder is None else 'a multi-modal'} model but "
                              f"model.tags is {'set' if cfg.model.tags else 'not set'}; stages must agree")
        if model.tag_schema is not None and set(model.tag_schema.columns) != set(cfg.model.tags.columns()):
            raise ConfigError(f"train.init_from={cfg.train.init_from} takes tags {model.tag_schema.columns}, "
                              f"model.tags lists {cfg.model.tags.columns()}")
        if model.size_classes != (tuple(size_classes) if size_classes else None):
            raise ConfigError(f"train.init_from={cfg.train.init_from} has size classes {model.size_classes}, "
                              f"model.size_head asks for {size_classes}")
        return model, card
    options = None
    if cfg.model.tags is not None:
        options = {k: getattr(cfg.model.tags, k) for k in TAG_OPTIONS}
    return build_model(cfg.model.backbone, cfg.model.pretrained, cfg.model.dropout, tags=schema,
                       tag_options=options, size_classes=size_classes), None


def check_segmentation_data(cfg: RunConfig, part: Manifest) -> None:
    """A footprint model's split needs a mask for every landslide chip: DataError naming the source when the
    ``mask_path`` column is missing or blank for landslide chips (clean chips may leave it blank)."""
    if not len(part):
        return
    frame = part.frame
    if "mask_uri" not in frame.columns:
        raise DataError(f"{part.source}: model.task segmentation needs a mask_path column (a landslide mask per "
                        "chip; blank for landslide-free chips)")
    missing = int(((frame["target"] == 1) & frame["mask_uri"].isna()).sum())
    if missing:
        raise DataError(f"{part.source}: {missing} landslide chip(s) have no mask_path; a footprint model needs "
                        "the landslide's mask for each")


def make_segmenter(cfg: RunConfig) -> tuple[LandslideSegmenter, ModelCard | None]:
    """A footprint model (``model.task: segmentation``), or the one in ``train.init_from``."""
    if cfg.train.init_from:
        model, card = load_checkpoint(cfg.train.init_from, task="segmentation")
        if model.spec.name != cfg.model.backbone or model.architecture != cfg.model.architecture:
            raise ConfigError(f"train.init_from={cfg.train.init_from} holds a {model.architecture} on "
                              f"{model.spec.name!r}, the config asks for a {cfg.model.architecture} on "
                              f"{cfg.model.backbone!r}")
        return model, card
    return build_segmenter(cfg.model.backbone, cfg.model.architecture, cfg.model.pretrained), None


def make_loader(manifest: Manifest, transform, cfg: RunConfig, shuffle: bool, seed: int,
                sampler=None, schema: TagSchema | None = None, image_size: int | None = None) -> DataLoader:
    """A loader of ``collate_skip_bad`` batches; with a (distributed) ``sampler`` it does no shuffling itself.
    With a tag ``schema`` batches carry encoded tags; with ``model.size_head`` they carry size classes;
    footprint models' batches carry masks at ``image_size`` (the model's input size)."""
    generator = torch.Generator().manual_seed(seed)
    size = (cfg.model.size_head.column, cfg.model.size_head.classes) if cfg.model.size_head else None
    if cfg.model.task == "segmentation":  # chips with their masks
        if image_size is None:
            raise ValueError("make_loader: a footprint model's loader needs image_size (the masks' size)")
        dataset = SegmentationDataset(manifest, transform, image_size, cfg.data.max_image_pixels)
    else:
        dataset = ChipDataset(manifest, transform, cfg.data.max_image_pixels, schema=schema, size=size)
    return DataLoader(dataset, batch_size=cfg.train.batch_size,
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
    leakage: dict | None = None
    """The tag-leakage check of the training split (multi-modal runs)."""
    confounds: dict | None = None
    """The acquisition-confound check of the training split (``data.confounds``)."""
    start_time: float = field(default_factory=time.perf_counter)

    def loader(self, manifest: Manifest, shuffle: bool, seed: int, sampler=None) -> DataLoader:
        """A loader over ``manifest`` with this run's transform, tags and size targets."""
        return make_loader(manifest, self.transform, self.cfg, shuffle, seed, sampler, self.model.tag_schema,
                           self.image_size)

    def train_sampler(self, num_replicas: int = 1, rank: int = 0, distributed: bool = False):
        """The training split's sampler for ``train.sampling``: a :class:`BalancedSampler`, else (Ray Train
        workers, ``distributed``) a shuffling ``DistributedSampler``, else None (the loader shuffles). Call its
        ``set_epoch`` each epoch (``Trainer.fit(set_epoch=...)``)."""
        mode = self.cfg.train.sampling
        if mode != "shuffle":
            return BalancedSampler(sampling_cells(self.train, mode), seed=self.cfg.train.seed,
                                   num_replicas=num_replicas, rank=rank)
        if distributed:
            from torch.utils.data.distributed import DistributedSampler

            return DistributedSampler(range(len(self.train)), num_replicas=num_replicas, rank=rank, shuffle=True,
                                      seed=self.cfg.train.seed)
        return None

    def trainer(self, device: torch.device, state_dir: str, callbacks: list, model: torch.nn.Module | None = None,
                save_state: bool = True) -> Trainer:
        """The :class:`Trainer` of this run (local runs and Ray Train workers alike); ``model``: the run's
        model as the worker prepared it (DDP-wrapped), default the run's own."""
        cfg = self.cfg
        return Trainer(self.model if model is None else model, cfg.train, device=device, pos_weight=self.pos_weight,
                       state_dir=state_dir, callbacks=callbacks, save_state=save_state, augment=self.augment,
                       size_weight=cfg.model.size_head.weight if cfg.model.size_head else 0.0)


def split_manifest(frame: pd.DataFrame) -> pd.DataFrame:
    """``splits.csv``: every sample with its split (train/val/test/excluded/unused) and group, and every column
    of the data (region, sensor, GSD, tags), as a manifest that ``landslide evaluate --data splits.csv --split
    test`` reads: ``path`` and ``mask_path`` are the resolved image and mask URIs, ``uri`` repeats ``path``."""
    out = frame.drop(columns=[c for c in ("path", "mask_path") if c in frame.columns])
    out = out.rename(columns={"mask_uri": "mask_path"})
    out.insert(0, "path", out["uri"])
    first = [c for c in ("path", "uri", "label", "target", "split", "group") if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


def prepare_run(cfg: RunConfig, write_files: bool = True) -> PreparedRun:
    """Load data and splits, build the model and apply freezing; ``write_files`` writes config and splits."""
    start = time.perf_counter()
    out = cfg.output_dir
    if write_files:
        storage.makedirs(out)
        storage.write_text(storage.join(out, "config.yaml"), dump_config(cfg))
    torch.manual_seed(cfg.train.seed)
    data = prepare_data(cfg)
    if cfg.data.train_regions:
        data = restrict_regions(data, cfg.data.train_regions)
    if cfg.data.train_fraction < 1 or cfg.data.train_filter:
        data = limit_training(data, cfg.data.train_fraction, cfg.data.train_filter, cfg.data.split.seed)
    if write_files:
        storage.write_text(storage.join(out, "splits.csv"), split_manifest(data.frame).to_csv(index=False))
    train_m, val_m, test_m = (get_split(data, s) for s in ("train", "val", "test"))
    counts = train_m.class_counts()
    if min(counts.values()) == 0:
        raise DataError(f"{cfg.data.train}: the training split has no "
                        f"{'landslide' if counts['landslide'] == 0 else 'non_landslide'} images "
                        f"(class counts {counts}); both classes are needed")

    leakage = check_leakage(cfg, train_m)
    if leakage is not None and write_files:
        storage.write_json(storage.join(out, "tag_leakage.json"), leakage)
    # read only where its report is used (local runs, rank 0); the Ray job checks error mode before workers start
    confounds = check_confounds(cfg, train_m) if write_files else None
    if confounds is not None:
        storage.write_json(storage.join(out, "confounds.json"), confounds)
    if cfg.model.size_head and cfg.model.size_head.column not in train_m.frame.columns:
        raise DataError(f"{cfg.data.train}: model.size_head.column {cfg.model.size_head.column!r} is not a "
                        f"column of the data; columns: {list(train_m.frame.columns)}")
    model, init_card = make_model(cfg, fit_tags(cfg, train_m))
    image_size = cfg.model.image_size or (init_card.input_size if init_card else model.spec.input_size)
    if cfg.model.task == "segmentation":
        check_input_size(image_size)
        for part in (train_m, val_m, test_m):
            check_segmentation_data(cfg, part)
    freezing = apply_freezing(model, cfg.model.freeze.strategy, cfg.model.freeze.n)
    log.info("trainable parameters: %d of %d (%s)", freezing["trainable_params"], freezing["total_params"],
             cfg.model.freeze.strategy)
    spec = model.spec
    aug = cfg.train.augment
    kernel = blur_kernel_size(aug.sensor_shift.blur_sigma[1]) if aug.sensor_shift is not None else 0
    if kernel // 2 >= image_size:
        raise ConfigError(f"train.augment.sensor_shift.blur_sigma {list(aug.sensor_shift.blur_sigma)}: a blur kernel "
                          f"of {kernel} px cannot filter {image_size}-px images; lower it below {image_size / 3:.1f} px")
    if cfg.train.sampling in ("region", "region_class") and "region" not in train_m.frame.columns:
        raise DataError(f"{cfg.data.train}: train.sampling={cfg.train.sampling} balances regions, but the data has no "
                        "'region' column (add one, e.g. with `landslide data merge --region`, or use sampling: "
                        "class)")
    augment = BatchAugment(spec.mean, spec.std, flips=aug.flips, rot90=aug.rot90, color_jitter=aug.color_jitter,
                           hue=aug.hue,
                           sensor_shift=aug.sensor_shift.model_dump() if aug.sensor_shift is not None else None)
    transform = build_transform(image_size, spec.mean, spec.std)
    if cfg.train.sampling != "shuffle":
        log.info("sampling %s: training cells %s", cfg.train.sampling,
                 cell_counts(sampling_cells(train_m, cfg.train.sampling)))
    class_balanced = cfg.train.sampling in ("class", "region_class")
    pos_weight = (counts["non_landslide"] / counts["landslide"]
                  if cfg.train.class_weighting == "balanced" and not class_balanced else None)
    return PreparedRun(cfg, data, train_m, val_m, test_m, model, image_size, freezing, transform, augment,
                       pos_weight, leakage, confounds, start)


def card_extras(run: PreparedRun) -> dict:
    """Model-card fields a run adds beyond the model itself (the size head's column)."""
    head = run.cfg.model.size_head
    return {"size_head": {"column": head.column}} if head else {}


def finish_run(run: PreparedRun, result: FitResult, device: torch.device, evaluate: bool = True,
               extra: dict | None = None) -> dict:
    """After fitting: best weights, validation threshold, model checkpoint, test evaluation, summary.json
    (with ``extra`` entries added, e.g. the number of distributed workers). Returns the summary's JSON form
    (:class:`~landslide.training.summary.RunSummary`)."""
    run.model.load_state_dict(result.best_state)
    write_training_records(run, result)
    card = build_card(run, result)
    selection = choose_thresholds(run, card, device)
    model_dir = storage.join(run.cfg.output_dir, "model")
    # saved before the test evaluation so a failure there never loses the trained model; the card is
    # rewritten with the test metrics afterwards
    save_checkpoint(run.model, card, model_dir)
    summary = run_summary(run, result, card, model_dir, selection)
    if evaluate and len(run.test):
        evaluate_test(run, result, card, summary, device)
        write_card(card, model_dir)
    summary.seconds = time.perf_counter() - run.start_time
    for key, value in (extra or {}).items():
        setattr(summary, key, value)
    storage.write_json(storage.join(run.cfg.output_dir, "summary.json"), summary.to_json())
    return summary.to_json()


def write_training_records(run: PreparedRun, result: FitResult) -> None:
    """``history.json`` (per-epoch metrics) and ``skipped_images.json`` (unreadable images, with reasons)."""
    out = run.cfg.output_dir
    storage.write_json(storage.join(out, "history.json"), result.history)
    storage.write_json(storage.join(out, "skipped_images.json"),
                       {"during_training": result.skipped_images, "at_load": run.data.skipped_examples,
                        "at_load_counts": dict(run.data.skipped)})


def build_card(run: PreparedRun, result: FitResult) -> ModelCard:
    """The model card of the fitted model: data, splits, epochs and history (threshold still the default)."""
    cfg = run.cfg
    return make_card(run.model, run.image_size, name=cfg.name, freezing=run.freezing, init_from=cfg.train.init_from,
                     training={"data": run.data.summary(), "splits": split_summary(run.data),
                               "epochs_run": len(result.history), "best_epoch": result.best_epoch,
                               "monitor": cfg.train.monitor, "stopped_early": result.stopped_early,
                               "seed": cfg.train.seed, "split_method": cfg.data.split.method,
                               "sampling": cfg.train.sampling, "augment": cfg.train.augment.model_dump(mode="json"),
                               "history": result.history, "confounds": _confound_summary(run.confounds)},
                     gsd_m=run.train.median_gsd(), input_gsd=input_gsd_summary(run.train.frame, run.image_size),
                     **card_extras(run))


def choose_pixel_threshold_for(run: PreparedRun, card: ModelCard, device: torch.device) -> dict:
    """Footprint models: the pixel threshold on the validation masks (``eval.threshold``: ``f1`` maximises
    pixel F1; ``youden`` is not defined for pixels and is treated as ``f1``; ``fixed`` keeps
    ``eval.fixed_threshold``), then the minimum footprint size that maximises object F1 there
    (:func:`landslide.evaluation.footprints.choose_min_object_px`), both set on ``card``."""
    cfg = run.cfg
    rule = "fixed" if cfg.eval.threshold == "fixed" else "f1"
    selection = choose_pixel_threshold(run.model, card, run.val, rule, cfg.eval.fixed_threshold,
                                       cfg.train.batch_size, device, cfg.data.num_workers,
                                       cfg.data.max_image_pixels) if len(run.val) else \
        {"method": "fixed", "value": cfg.eval.fixed_threshold}
    if len(run.val):  # then the minimum footprint size, at that threshold
        selection["min_object_px"] = choose_min_object_px(run.model, card, run.val, float(selection["value"]),
                                                          batch_size=cfg.train.batch_size, device=device,
                                                          num_workers=cfg.data.num_workers,
                                                          max_pixels=cfg.data.max_image_pixels)
        card.min_object_px = selection["min_object_px"]["value"]
    card.threshold = float(selection["value"])
    card.thresholds_by_tta = {"none": card.threshold}
    card.threshold_selection = selection
    return selection


def choose_thresholds(run: PreparedRun, card: ModelCard, device: torch.device) -> dict:
    """Choose the decision threshold on the validation split, for the configured test-time augmentation and
    (to compare, and for users who switch TTA off) without it; set them, the mode and the tag-leakage check
    on ``card``. Returns the selection record (method, value, where chosen, validation metrics there)."""
    cfg = run.cfg
    if cfg.model.task == "segmentation":
        return choose_pixel_threshold_for(run, card, device)
    selection: dict = {"method": "fixed", "value": cfg.eval.fixed_threshold}
    thresholds = {}
    for mode in dict.fromkeys([cfg.eval.tta, "none"]):  # the configured mode first; plain too, to compare
        if not len(run.val):
            break
        vpreds, _ = predict_manifest(run.model, card, run.val, cfg.train.batch_size, device, cfg.data.num_workers,
                                     cfg.data.max_image_pixels, tta=mode)
        if len(vpreds):
            t = choose_threshold(vpreds["target"].to_numpy(), vpreds["probability"].to_numpy(), cfg.eval.threshold,
                                 cfg.eval.fixed_threshold)
            thresholds[mode] = t
            if mode == cfg.eval.tta:
                y, p = vpreds["target"].to_numpy(), vpreds["probability"].to_numpy()
                selection = {"method": cfg.eval.threshold, "value": t, "chosen_on": "validation",
                             "validation_metrics": binary_metrics(y, p, t),
                             "rules": threshold_rules(y, p, cfg.eval.fixed_threshold)}
                card.calibration = fit_calibration(y, p, mode)
                storage.write_text(storage.join(cfg.output_dir, "eval", "validation_predictions.csv"),
                                   vpreds.drop(columns="index").to_csv(index=False))
    card.tta = cfg.eval.tta
    card.threshold = float(selection["value"])
    card.thresholds_by_tta = {cfg.eval.tta: card.threshold, **thresholds}
    card.threshold_selection = selection
    if run.leakage is not None and card.tags is not None:
        card.tags.leakage = run.leakage
    return selection


def fit_calibration(y, p, tta: str) -> dict:
    """Temperature scaling on the validation predictions (of the card's TTA mode), with ECE and Brier score
    before and after, for the model card."""
    temperature = fit_temperature(y, p)
    return {"method": "temperature", "temperature": temperature, "fitted_on": "validation", "tta": tta,
            "validation_before": calibration_metrics(y, p),
            "validation_after": calibration_metrics(y, apply_temperature(p, temperature))}


def _confound_summary(report: dict | None) -> dict | None:
    return {k: report.get(k) for k in ("verdict", "confounds", "combined_auc")} if report else None


def run_summary(run: PreparedRun, result: FitResult, card: ModelCard, model_dir: str,
                selection: dict) -> RunSummary:
    """The summary of a finished fit (before the test evaluation)."""
    cfg, model = run.cfg, run.model
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
    epoch_speed = [h["train_images_per_s"] for h in result.history if h.get("train_images_per_s")]
    summary = RunSummary(
        name=cfg.name, output_dir=cfg.output_dir, model_dir=model_dir, backbone=model.spec.name,
        image_size=run.image_size, best_epoch=result.best_epoch, epochs_run=len(result.history),
        resumed_from_epoch=result.resumed_from_epoch, threshold=card.threshold,
        trainable_params=run.freezing["trainable_params"], total_params=run.freezing["total_params"],
        freeze={"strategy": run.freezing["strategy"], "n": run.freezing["n"]},
        model_size_mb=storage.size(storage.join(model_dir, WEIGHTS_FILE)) / 1e6,
        depth=len(parameter_layers(model)), train_images=len(run.train), skipped_images=len(result.skipped_images),
        best_epoch_metrics={k: v for k, v in best.items() if isinstance(v, (int, float))},
        train_images_per_s=float(sum(epoch_speed) / len(epoch_speed)) if epoch_speed else None,
        splits=card.training["splits"] if card.training else {}, inputs=card.inputs)
    if cfg.model.task == "segmentation" and "validation_metrics" in selection:
        summary.val_metrics = footprint_val_metrics(selection)
    elif "validation_metrics" in selection:  # at the chosen threshold: what experiments select models by
        summary.val_metrics = {k: v for k, v in selection["validation_metrics"].items()
                               if isinstance(v, (int, float))}
    if run.leakage is not None:
        summary.tag_leakage = {k: run.leakage[k] for k in ("verdict", "leaks", "combined_auc")}
    summary.threshold_rules = selection.get("rules")
    summary.confounds = _confound_summary(run.confounds)
    return summary


def footprint_val_metrics(selection: dict) -> dict[str, float]:
    """A footprint model's validation metrics under their summary names (``pixel_iou``, ``pixel_f1``,
    ``pixel_precision``, ``pixel_recall`` at the chosen pixel threshold; ``object_f1@0.5`` at the chosen minimum
    footprint size), from :func:`choose_pixel_threshold_for`'s selection: what experiments select by."""
    pixel = selection["validation_metrics"]
    out = {f"pixel_{k}": float(pixel[k]) for k in ("iou", "f1", "precision", "recall")
           if isinstance(pixel.get(k), (int, float))}
    size = selection.get("min_object_px") or {}
    f1 = (size.get("object_f1") or {}).get(str(size.get("value")))
    if f1 is not None:
        out["object_f1@0.5"] = float(f1)
    return out


def evaluate_test(run: PreparedRun, result: FitResult, card: ModelCard, summary: RunSummary,
                  device: torch.device) -> None:
    """Evaluate on the test split (``output_dir/eval``: metrics, report, plots, galleries) and record the
    metrics, with and without TTA, tags and the size head where they apply, in ``summary`` and ``card``."""
    cfg = run.cfg
    if cfg.model.task == "segmentation":
        return evaluate_test_footprints(run, card, summary, device)
    metrics = evaluate_model(run.model, card, run.test, storage.join(cfg.output_dir, "eval"), cfg.eval,
                             result.history, device, cfg.train.batch_size, cfg.data.num_workers, cfg.train.seed,
                             title=f"{cfg.name}: test split",
                             extra_report={"data": cfg.data.train, "split method": cfg.data.split.method})
    summary.test_metrics = {k: metrics[k] for k in TEST_METRICS}
    summary.test_intervals = metrics.get("intervals", {})
    summary.test_images = int(metrics.get("n", len(run.test)))
    if metrics.get("images_per_s"):
        summary.inference_images_per_s = metrics["images_per_s"]
    card.metrics = {"test": summary.test_metrics, "test_intervals": summary.test_intervals}
    if "by_region" in metrics:
        summary.test_by_region = {region: {**{k: m[k] for k in TEST_METRICS}, "n": m["n"],
                                           "intervals": m.get("intervals", {})}
                                  for region, m in metrics["by_region"].items()}
        card.metrics["test_by_region"] = summary.test_by_region
    if "tta" in metrics:
        plain = metrics["tta"]["without_tta"]
        summary.tta = metrics["tta"]["mode"]
        summary.test_metrics_without_tta = {k: plain[k] for k in TEST_METRICS}
        summary.tta_minus_without = metrics["tta"]["tta_minus_without"]
        card.metrics["test_without_tta"] = summary.test_metrics_without_tta
    if "tags" in metrics:
        bare = metrics["tags"]["without_tags"]
        summary.test_metrics_without_tags = {k: bare[k] for k in TEST_METRICS}
        summary.test_intervals_without_tags = bare.get("intervals", {})
        summary.tags_with_minus_without = metrics["tags"]["with_minus_without"]
        summary.test_tag_coverage = metrics["tags"]["coverage"]
        card.metrics["test_without_tags"] = summary.test_metrics_without_tags
    if "size" in metrics:
        summary.test_size_metrics = {k: metrics["size"][k] for k in
                                     ("n", "accuracy", "macro_f1", "intervals", "majority_baseline_accuracy")}
        card.metrics["test_size"] = summary.test_size_metrics


def evaluate_test_footprints(run: PreparedRun, card: ModelCard, summary: RunSummary, device: torch.device) -> None:
    """Footprint models: the test evaluation (:func:`landslide.evaluation.footprints.evaluate_footprints`) into
    ``output_dir/eval``, its pixel and object metrics into ``summary`` and ``card``."""
    cfg = run.cfg
    metrics = evaluate_footprints(run.model, card, run.test, storage.join(cfg.output_dir, "eval"), cfg.eval, device,
                                  cfg.train.batch_size, cfg.data.num_workers, cfg.train.seed,
                                  title=f"{cfg.name}: footprints on the test split",
                                  extra_report={"data": cfg.data.train, "split method": cfg.data.split.method},
                                  max_pixels=cfg.data.max_image_pixels)
    summary.test_metrics, summary.test_intervals = summary_metrics(metrics)
    summary.test_images = metrics["images"]
    card.metrics = {"test": summary.test_metrics, "test_intervals": summary.test_intervals}
    if "by_region" in metrics:
        summary.test_by_region = {}
        for region, m in metrics["by_region"].items():
            values, intervals = summary_metrics(m)
            summary.test_by_region[region] = {**values, "n": m["images"], "intervals": intervals}
        card.metrics["test_by_region"] = summary.test_by_region


def run_training(cfg: RunConfig, evaluate: bool = True) -> dict:
    """Train locally (one process), pick the threshold on validation data, save the model, evaluate on test."""
    run = prepare_run(cfg)
    device = resolve_device(cfg.train.device)
    trainer = run.trainer(device, cfg.output_dir,
                          [lambda epoch, metrics, _: log.info("%s", describe_epoch(metrics, cfg.train.epochs))])
    sampler = run.train_sampler()
    result = trainer.fit(run.loader(run.train, True, cfg.train.seed, sampler),
                         run.loader(run.val, False, 0) if len(run.val) else None,
                         set_epoch=sampler.set_epoch if sampler is not None else None)
    return finish_run(run, result, device, evaluate)
