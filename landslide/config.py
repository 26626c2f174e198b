"""Typed run configuration (pydantic), loaded from YAML. Unknown keys and bad values are errors that name
the field, e.g. ``train.epochs: Input should be greater than 0``. The resolved config is written into every
run folder."""

from __future__ import annotations

import math

from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      field_validator, model_validator)

from landslide import storage
from landslide.errors import ConfigError, StorageError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


TtaMode = Literal["none", "flips", "d4"]
"""Test-time augmentation modes (landslide.models.tta)."""
CamMethod = Literal["gradcam", "gradcam++", "eigencam"]
Task = Literal["classification", "segmentation"]
"""What a model predicts: a landslide probability per chip, or per pixel (footprints)."""
SegmentationArchitecture = Literal["unet", "unetplusplus", "fpn", "deeplabv3plus"]
"""Decoders of footprint models (landslide.models.segmentation)."""
SegmentationLossName = Literal["dice_bce", "focal_dice", "bce"]
"""Losses of footprint models (landslide.training.losses)."""
"""Class-activation-map methods (landslide.explain.gradcam.CAM_METHODS)."""
TileFormat = Literal["auto", "xyz", "manifest", "geojson", "geotiff"]
"""Tile sources a sweep can index (landslide.inventory.tiles)."""


def _distinct(value: list) -> list:
    if len(set(value)) != len(value):
        raise ValueError(f"values repeat: {value}")
    return value


Distinct = AfterValidator(_distinct)
"""A list whose values must all differ (seeds, regions)."""


class SplitConfig(_Strict):
    method: Literal["auto", "predefined", "random", "stratified", "group", "spatial"] = "auto"
    """auto: predefined if the manifest has a split column, else group, else spatial (lat/lon), else stratified."""
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    seed: int = 0
    block_size_m: float = Field(1000.0, gt=0)
    buffer_m: float = Field(0.0, ge=0)
    folds: int | None = Field(None, ge=2, le=100)
    """Cross-validation: deal the groups (or chips) into this many folds; fold ``fold`` is the test split and
    ``val_fraction`` of the data is drawn from the others (``test_fraction`` is then unused)."""
    fold: int = Field(0, ge=0)
    """The test fold (0 .. folds-1); ``experiment.repeats.folds`` runs every fold."""

    @model_validator(mode="after")
    def _fold_in_range(self) -> "SplitConfig":
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"split.fold={self.fold} is not a fold of split.folds={self.folds} (0..{self.folds - 1})")
        if self.folds is not None and self.method == "predefined":
            raise ValueError("split.folds: cross-validation needs method group, spatial, stratified or random")
        return self


class DataConfig(_Strict):
    train: str
    """Manifest (CSV/Parquet) or class-folder tree; split into train/val/test unless val/test are given."""
    val: str | None = None
    test: str | None = None
    split: SplitConfig = SplitConfig()
    max_image_pixels: int = Field(64_000_000, gt=0)
    num_workers: int = Field(0, ge=0)
    train_fraction: float = Field(1.0, gt=0, le=1)
    """Train on this stratified fraction of the training split (nested: a smaller fraction is a subset of a
    larger one with the same split seed); validation and test splits are untouched."""
    train_filter: dict[str, list[Any]] | None = None
    """Train only on training-split rows whose column matches one of the values, e.g. ``{scene: [A, B]}``."""
    confounds: Literal["error", "warn", "off"] = "warn"
    """Before training: do file properties of the training chips (size, aspect, format) predict the label
    (:mod:`landslide.evaluation.confounds`, grouped out-of-fold AUC)? ``error`` stops the run, ``warn`` logs
    it; either way the report is ``confounds.json`` in the run folder and a line in the model card."""
    max_confound_auc: float = Field(0.7, gt=0.5, le=1)
    """Out-of-fold ROC AUC at or above which a file property counts as a confound."""
    train_regions: list[str] | None = Field(None, min_length=1)
    """Train and validate only on chips of these regions (``region`` column); the test split keeps every
    region, and the test report breaks metrics down by region: cross-region accuracy, threshold included."""
    ambiguous: Literal["skip", "keep"] = "skip"
    """Chips labelled ``ambiguous`` (a landslide share between the mask rule's classes, e.g. a sliver at the
    edge): ``skip`` them (counted), or ``keep`` them with their masks — footprint models only, whose truth is
    the mask; they are then landslide chips in splits and sampling, and the small landslides count in every
    footprint metric."""


class FreezeConfig(_Strict):
    strategy: Literal["head", "last_blocks", "last_layers", "all"] = "all"
    n: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _n_needed(self) -> "FreezeConfig":
        if self.strategy in ("last_blocks", "last_layers") and self.n < 1:
            raise ValueError(f"strategy {self.strategy!r} needs n >= 1")
        return self


class TagConfig(_Strict):
    """The multi-modal model's tag inputs: manifest columns (e.g. from ``landslide catalog join``), encoded
    with an explicit unknown value (see landslide.data.tags)."""

    categorical: list[str] = Field(default_factory=list)
    """Columns of categories, e.g. ``[glc_setting, glc_trigger]``; one learned embedding each."""
    numeric: list[str] = Field(default_factory=list)
    """Columns of numbers, e.g. ``[glc_distance_km]``; standardised on the training split, with a missing flag."""
    min_count: int = Field(2, ge=1)
    """Categories seen fewer times in the training split are encoded as unknown."""
    embedding_dim: int = Field(4, ge=1, le=256)
    hidden: int = Field(32, ge=1, le=4096)
    """Width of the tag features concatenated with the image features."""
    drop_all: float = Field(0.3, ge=0, le=1)
    """Training: probability that all of a chip's tags are hidden, so the model also works without tags."""
    drop_each: float = Field(0.1, ge=0, le=1)
    """Training: probability that any single tag is hidden."""
    leakage: Literal["error", "warn", "off"] = "error"
    """What a tag-leakage finding on the training split does (see landslide.evaluation.leakage)."""
    max_leakage_auc: float = Field(0.9, gt=0.5, le=1)
    """Tags whose out-of-fold ROC AUC for the label (alone, or their presence alone) reaches this leak it."""

    def columns(self) -> list[str]:
        """Every tag column, categorical first."""
        return [*self.categorical, *self.numeric]

    @model_validator(mode="after")
    def _columns(self) -> "TagConfig":
        from landslide.data.manifest import RESERVED_COLUMNS

        columns = self.columns()
        if not columns:
            raise ValueError("model.tags needs at least one categorical or numeric column")
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"tag column(s) {repeated} listed more than once")
        reserved = sorted(set(columns) & set(RESERVED_COLUMNS))
        if reserved:
            raise ValueError(f"column(s) {reserved} cannot be tags: they are the label, split or location")
        return self


class SizeHeadConfig(_Strict):
    """A second head predicting the landslide size class (trained on landslide chips with a known size)."""

    column: str = "glc_size"
    classes: list[str] = Field(default_factory=lambda: ["small", "medium", "large", "very_large", "catastrophic"])
    """Size classes in order; other values (``unknown``, blanks) are ignored by the loss and the metrics."""
    weight: float = Field(0.5, gt=0)
    """Weight of the size loss relative to the landslide loss."""

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        from landslide.data.tags import category

        names = [category(v) for v in value]
        if len(value) < 2 or None in names or len(set(names)) != len(names):
            raise ValueError("size classes must be at least two distinct, known names")
        return names


class ModelConfig(_Strict):
    task: Task = "classification"
    """``segmentation``: a footprint model (an smp decoder on the backbone as encoder) trained on the data's
    ``mask_path`` masks; it predicts a landslide probability per pixel."""
    architecture: SegmentationArchitecture = "unet"
    """Footprint models: the decoder (U-Net, U-Net++, FPN, DeepLabV3+)."""
    backbone: str = "tf_efficientnet_lite0"
    pretrained: str = "auto"
    """none | offline | hub | auto | a weights path/URI (see landslide.models.weights)."""
    image_size: int | None = Field(None, ge=16, le=2048)
    """Input size in px; default: the backbone's size from the registry."""
    dropout: float = Field(0.2, ge=0, lt=1)
    freeze: FreezeConfig = FreezeConfig()
    tags: TagConfig | None = None
    """Multi-modal: tags fused with the image features before the head (default: image only)."""
    size_head: SizeHeadConfig | None = None

    @model_validator(mode="after")
    def _segmentation(self) -> "ModelConfig":
        if self.task != "segmentation":
            return self
        extras = [name for name, on in (("tags", self.tags), ("size_head", self.size_head)) if on]
        if extras:
            raise ValueError(f"model.task segmentation takes images only: remove model.{' and model.'.join(extras)}")
        if self.image_size is not None and self.image_size % 32:
            lower = max(32, self.image_size // 32 * 32)
            raise ValueError(f"model.image_size {self.image_size}: a segmentation model needs a multiple of 32 "
                             f"(the encoder's output stride), e.g. {lower} or {lower + 32}")
        return self

    @model_validator(mode="after")
    def _size_not_an_input(self) -> "ModelConfig":
        if self.size_head and self.tags and self.size_head.column in self.tags.columns():
            raise ValueError(f"size_head.column {self.size_head.column!r} is also a tag input: the head would "
                             "read its answer from its input")
        return self

    @field_validator("backbone")
    @classmethod
    def _known(cls, value: str) -> str:
        from landslide.models.registry import get_spec

        try:
            return get_spec(value).name
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class SensorShiftConfig(_Strict):
    """Per-batch augmentations that model a change of sensor, processing and season (kornia; see
    :func:`landslide.data.transforms.sensor_shift_pipeline`). ``{}`` turns them on with these defaults."""

    p: float = Field(0.5, ge=0, le=1)
    """Probability that each augmentation is applied to an image."""
    brightness: float = Field(0.3, ge=0, le=1)
    contrast: float = Field(0.3, ge=0, le=1)
    saturation: float = Field(0.3, ge=0, le=1)
    hue: float = Field(0.03, ge=0, le=0.5)
    gamma: tuple[float, float] = (0.7, 1.5)
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    """Gaussian blur, pixels."""
    sharpness: float = Field(1.0, ge=0)
    noise_std: float = Field(0.03, ge=0, le=0.5)
    """Gaussian noise on the [0, 1] image."""
    jpeg_quality: tuple[float, float] = (30.0, 95.0)
    scale: tuple[float, float] = (0.8, 1.25)
    """Scale jitter around the training GSD (zoom factors)."""

    @field_validator("gamma", "blur_sigma", "jpeg_quality", "scale")
    @classmethod
    def _range(cls, value: tuple[float, float], info) -> tuple[float, float]:
        low, high = value
        if not (0 < low <= high < math.inf):
            raise ValueError(f"{info.field_name} must be a finite range [low, high] with 0 < low <= high, got "
                             f"{list(value)}")
        if info.field_name == "jpeg_quality" and not 1 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality is a range within [1, 100], got {list(value)}")
        return value


class AugmentConfig(_Strict):
    flips: bool = True
    rot90: bool = True
    color_jitter: float = Field(0.1, ge=0, le=1)
    """Brightness, contrast and saturation jitter."""
    hue: float = Field(0.0, ge=0, le=0.5)
    """Hue jitter (off by default: it shifts vegetation and soil colours, the very signal)."""
    sensor_shift: SensorShiftConfig | None = None
    """Sensor- and season-shift augmentations (blur, sharpening, noise, JPEG, gamma, scale jitter, stronger
    colour); off by default (see docs/results.md for what they bought across regions)."""


class TrainConfig(_Strict):
    epochs: int = Field(15, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    plateau_patience: int = Field(2, ge=0)
    early_stopping_patience: int | None = Field(5, ge=1)
    monitor: Literal["val_loss", "val_f1", "val_accuracy", "val_auc", "val_iou"] = "val_loss"
    """Classification: ``val_auc`` etc. of the chips; segmentation: ``val_iou`` and ``val_f1`` of the pixels."""
    segmentation_loss: SegmentationLossName = "dice_bce"
    """Footprint models: soft Dice + BCE, focal + Dice, or BCE alone (landslide.training.losses)."""
    class_weighting: Literal["none", "balanced"] = "balanced"
    """``balanced``: the loss weighs landslides by the class ratio of the training split (not applied when
    ``sampling`` already balances classes)."""
    sampling: Literal["shuffle", "class", "region", "region_class"] = "shuffle"
    """How each epoch draws training chips: ``shuffle`` every chip once; otherwise as many chips as the split
    has, with replacement, each class / region / (region, class) cell equally often."""
    seed: int = 0
    amp: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"
    init_from: str | None = None
    """Weight transfer: start from this checkpoint folder (stage 2)."""
    max_steps_per_epoch: int | None = Field(None, gt=0)
    augment: AugmentConfig = AugmentConfig()
    progress: bool = True


class EvalConfig(_Strict):
    threshold: Literal["f1", "youden", "fixed"] = "f1"
    """How the decision threshold is chosen on the validation split."""
    fixed_threshold: float = Field(0.5, gt=0, lt=1)
    bootstrap: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    cam_method: CamMethod = "gradcam"
    tta: TtaMode = "none"
    """Test-time augmentation: average over 4 flips or all 8 rotations/mirrors. The threshold is chosen on
    validation predictions made the same way, the card records the mode (sweeps and the endpoint use it), and
    the evaluation also reports the model without it and the paired difference."""
    cam_max_images: int = Field(200, ge=0)
    gallery_size: int = Field(12, ge=0)


class RayConfig(_Strict):
    """How ``ray_jobs.train`` runs this config on a Ray cluster; local runs ignore it. Ray's ``storage_path``
    is the parent of ``output_dir`` (so Ray's run folder is ``output_dir`` itself)."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = Field(default_factory=dict)
    """e.g. ``{CPU: 4, GPU: 1}``; default: 1 CPU (and 1 GPU with use_gpu)."""
    max_failures: int = Field(3, ge=-1)
    """Worker-group restarts allowed after a failure (-1: unlimited); each resumes from the last checkpoint."""
    checkpoints_to_keep: int = Field(2, ge=1)
    """Checkpoints kept in storage: the best ones by ``train.monitor``, plus always the latest."""
    wait_for_resources: bool = False
    """Submit even when the cluster lacks the resources now (it autoscales); otherwise fail fast."""


class ExperimentVariantSet(_Strict):
    strategy: Literal["head", "last_blocks", "last_layers", "all"]
    n: list[int] = Field(default_factory=lambda: [0])


class SubsetConfig(_Strict):
    name: str
    filter: dict[str, list[Any]]
    """Training rows kept, by column value (e.g. ``{scene: [A, B]}``)."""


class StageConfig(_Strict):
    name: str
    set: dict[str, Any] = Field(default_factory=dict)
    """Dotted overrides for this stage, e.g. ``{data.train: gs://b/set2.csv, model.freeze.n: 6}``."""


class RepeatConfig(_Strict):
    """Every variant of an experiment run several times; results are reported per run and aggregated."""

    folds: int | None = Field(None, ge=2, le=100)
    """Cross-validation: one run per fold (``data.split.folds``/``fold``), so every chip is tested once; the
    out-of-fold predictions are pooled for metrics with group-bootstrap intervals."""
    seeds: Annotated[list[int], Distinct] = Field(default_factory=list)
    """One run per seed (``train.seed`` and ``data.split.seed``: with ``folds`` each seed deals new folds,
    without them each seed draws a new grouped split)."""



class _ExperimentBase(_Strict):
    """What every experiment kind has. A new kind is one subclass here (its ``kind`` Literal and fields),
    one entry in :data:`EXPERIMENT_KINDS` and one planner in :data:`landslide.experiments.plan.PLANNERS`."""

    name: str | None = None
    """study parts: the part's name (its folder under the study's output_dir)."""
    set: dict[str, Any] = Field(default_factory=dict)
    """study parts: dotted overrides of the study's settings for this part, e.g. ``{train.epochs: 5}``."""
    repeats: RepeatConfig | None = None
    """Run every variant once per fold and/or seed (in a study: the default for parts without their own)."""
    select: Literal["mcc", "f1", "accuracy", "roc_auc", "pixel_iou", "pixel_f1", "object_f1@0.5"] = "mcc"
    """The best variant is the one with the highest mean *validation* value of this metric (test metrics
    never choose); its model is exported with its card to ``output_dir/best_model``. Classifiers: ``mcc``,
    ``f1``, ``accuracy``, ``roc_auc``; footprint models: ``pixel_iou`` (their default), ``pixel_f1``,
    ``object_f1@0.5``."""


CHIP_SELECT = ("mcc", "f1", "accuracy", "roc_auc")
PIXEL_SELECT = ("pixel_iou", "pixel_f1", "object_f1@0.5")


class SingleExperiment(_ExperimentBase):
    """One plain run in ``output_dir`` (the default when a config has no ``experiment`` section)."""

    kind: Literal["single"] = "single"


class CompareExperiment(_ExperimentBase):
    """The same data, splits and budget for several backbones."""

    kind: Literal["compare"]
    backbones: list[str] = Field(min_length=1)
    """Backbones trained with identical splits and budget (registry names or aliases)."""
    model_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-backbone model settings, e.g. ``{efficientnet_b3: {pretrained: hub}}``."""

    @field_validator("backbones")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        from landslide.models.registry import get_spec  # the registry is code: checked here, not in the schema

        try:
            return [get_spec(b).name for b in value]
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class FinetuneExperiment(_ExperimentBase):
    """A grid over freezing strategy and depth (last N blocks / last N layers)."""

    kind: Literal["finetune"]
    freeze: list[ExperimentVariantSet] = Field(min_length=1)
    """Strategies with the depths (blocks or layers) to unfreeze."""


class TransferExperiment(_ExperimentBase):
    """Stages in order; each later stage starts from the previous stage's model (weight transfer)."""

    kind: Literal["transfer"]
    stages: list[StageConfig] = Field(min_length=2)


class VariantsExperiment(_ExperimentBase):
    """Named variants of the same run, each with its own dotted overrides, compared on the same data, splits and
    budget: what the other kinds do not vary (input size, decoder, loss, epochs, sampling...)."""

    kind: Literal["variants"]
    variants: list[StageConfig] = Field(min_length=2)
    """Each ``{name, set}``: e.g. ``{name: s256, set: {model.image_size: 256}}``."""

    @field_validator("variants")
    @classmethod
    def _distinct(cls, value: list[StageConfig]) -> list[StageConfig]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        return value


class DataSizeExperiment(_ExperimentBase):
    """Growing training subsets (fractions or named sets) against fixed validation and test splits."""

    kind: Literal["data_size"]
    fractions: list[float] = Field(default_factory=list)
    """Training fractions in (0, 1] (the same val/test splits for all)."""
    subsets: list[SubsetConfig] = Field(default_factory=list)
    """Named training subsets (e.g. growing sets of scenes or sources)."""

    @model_validator(mode="after")
    def _some(self) -> "DataSizeExperiment":
        if not (self.fractions or self.subsets):
            raise ValueError("kind 'data_size' needs fractions or subsets")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError("fractions must be in (0, 1]")
        return self


class ModalityExperiment(_ExperimentBase):
    """The configured multi-modal model (``model.tags``) against the same model without tags."""

    kind: Literal["modality"]


class RegionsExperiment(_ExperimentBase):
    """The train x test region matrix: the same model trained (and validated, threshold included) on each
    region alone, on all regions but one, and on all of them, each tested on every region's held-out chips
    (``data.train_regions`` per variant; the data needs a ``region`` column)."""

    kind: Literal["regions"]
    regions: Annotated[list[str], Distinct] = Field(min_length=2)
    """The regions to train on (values of the data's ``region`` column)."""
    train_sets: list[Literal["each", "all_but_one", "all"]] = Field(
        default_factory=lambda: ["each", "all_but_one", "all"], min_length=1)
    """Which training sets to run: each region alone, all but one (the leave-one-region-out estimate), all."""


def _experiment_kind(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("kind", "single")
    return getattr(value, "kind", "single")


PartConfig = Annotated[
    Union[Annotated[SingleExperiment, Tag("single")], Annotated[CompareExperiment, Tag("compare")],
          Annotated[FinetuneExperiment, Tag("finetune")], Annotated[TransferExperiment, Tag("transfer")],
          Annotated[DataSizeExperiment, Tag("data_size")], Annotated[ModalityExperiment, Tag("modality")],
          Annotated[RegionsExperiment, Tag("regions")]],
    Discriminator(_experiment_kind,
                  custom_error_type="experiment_kind",
                  custom_error_message="unknown experiment kind: choose single, compare, finetune, transfer, "
                                       "data_size, modality or regions (study parts cannot be studies)")]
"""An experiment that can be a study part: any kind but ``study``."""


class StudyExperiment(_ExperimentBase):
    """Several experiments (``parts``) on the same data with one report (:mod:`landslide.experiments.study`)."""

    kind: Literal["study"]
    parts: list[PartConfig] = Field(min_length=1)
    """The experiments to run, each an experiment of another kind with a ``name``."""
    targets: dict[Literal["accuracy", "precision", "recall", "specificity", "f1", "mcc", "roc_auc"], float] = \
        Field(default_factory=dict)
    """Goals for the selected model's test estimate, e.g. ``{f1: 0.90, mcc: 0.80}``; the report says whether
    the estimate and its interval's lower bound reach them."""
    error_breakdown: list[str] = Field(default_factory=list)
    """Manifest columns to break the selected model's test errors down by, e.g. ``[scene,
    landslide_fraction]`` (numeric columns in quantile bins)."""

    @model_validator(mode="after")
    def _named(self) -> "StudyExperiment":
        names = [p.name for p in self.parts]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"study parts need distinct names, got {names}")
        return self


EXPERIMENT_KINDS: dict[str, type[_ExperimentBase]] = {
    "single": SingleExperiment, "compare": CompareExperiment, "finetune": FinetuneExperiment,
    "transfer": TransferExperiment, "data_size": DataSizeExperiment, "modality": ModalityExperiment,
    "regions": RegionsExperiment, "study": StudyExperiment, "variants": VariantsExperiment}
"""Experiment kinds by ``kind`` (see :mod:`landslide.experiments.plan`)."""

ExperimentConfig = Annotated[
    Union[Annotated[SingleExperiment, Tag("single")], Annotated[CompareExperiment, Tag("compare")],
          Annotated[FinetuneExperiment, Tag("finetune")], Annotated[TransferExperiment, Tag("transfer")],
          Annotated[DataSizeExperiment, Tag("data_size")], Annotated[ModalityExperiment, Tag("modality")],
          Annotated[RegionsExperiment, Tag("regions")], Annotated[StudyExperiment, Tag("study")],
          Annotated[VariantsExperiment, Tag("variants")]],
    Discriminator(_experiment_kind,
                  custom_error_type="experiment_kind",
                  custom_error_message="unknown experiment kind: choose single, compare, finetune, transfer, "
                                       "data_size, modality, regions or study")]
"""Several runs from one config (see landslide.experiments), one class per ``kind`` (the discriminator;
``single`` when absent): each kind accepts only its own fields."""


class RunConfig(_Strict):
    name: str = "run"
    output_dir: str = "runs/run"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    ray: RayConfig = RayConfig()
    experiment: ExperimentConfig = SingleExperiment()

    @model_validator(mode="after")
    def _task_fits(self) -> "RunConfig":
        pixels, monitor = self.model.task == "segmentation", self.train.monitor
        if pixels and monitor in ("val_accuracy", "val_auc"):
            raise ValueError(f"train.monitor {monitor} is a chip metric; a segmentation model reports val_loss, "
                             "val_iou and val_f1 of its pixels")
        if not pixels and monitor == "val_iou":
            raise ValueError("train.monitor val_iou is a pixel metric of segmentation models; a classifier reports "
                             "val_loss, val_f1, val_accuracy and val_auc")
        if not pixels and self.data.ambiguous == "keep":
            raise ValueError("data.ambiguous keep: ambiguous chips have no chip class; only footprint models "
                             "(model.task: segmentation) can learn from their masks")
        exp = self.experiment
        if pixels and exp.kind in ("study", "modality"):
            raise ValueError(f"experiment kind {exp.kind!r} does not take footprint (segmentation) models: "
                             + ("they take no tags" if exp.kind == "modality" else
                                "its report (test-time augmentation, Grad-CAM attention) is the classifiers'; run "
                                "the parts as experiments of their own (compare, finetune, transfer, data_size, "
                                "regions)"))
        if pixels and exp.select in CHIP_SELECT:
            if "select" in exp.model_fields_set:
                raise ValueError(f"experiment.select {exp.select} is a chip metric; footprint models are selected "
                                 f"by {', '.join(PIXEL_SELECT)}")
            exp.select = "pixel_iou"
        if not pixels and exp.select in PIXEL_SELECT:
            raise ValueError(f"experiment.select {exp.select} is a footprint metric; classifiers are selected by "
                             f"{', '.join(CHIP_SELECT)}")
        return self

    @model_validator(mode="after")
    def _modality_needs_tags(self) -> "RunConfig":
        if self.experiment.kind == "modality" and self.model.tags is None:
            raise ValueError("experiment kind 'modality' compares image-only with multi-modal: set model.tags")
        return self


class TilesConfig(_Strict):
    source: str
    """Where the tiles are: an XYZ tree ``{z}/{x}/{y}.png|jpg|webp``, a tile manifest (CSV/Parquet with
    ``uri`` or ``path`` and ``west,south,east,north`` in EPSG:4326), a GeoJSON index (one feature per
    tile, ``uri``/``path`` property), a GeoTIFF/COG scene or a folder of them."""
    format: TileFormat = "auto"
    index: str | None = None
    """A tile index built by ``landslide tiles index`` (Parquet); default: build it once and cache it as
    ``tiles_index.parquet`` in the sweep's output."""
    zoom: int | None = Field(None, ge=0, le=30)
    """XYZ: the zoom level to sweep (required when the tree holds several)."""
    scheme: Literal["auto", "xyz", "tms"] = "auto"
    """XYZ trees: row order. ``xyz`` counts rows from the north (slippy maps), ``tms`` from the south
    (gdal2tiles' default, MBTiles); ``auto``: TMS when the tree has a ``tilemapresource.xml``, else XYZ (logged)."""
    chip_size: int | None = Field(None, ge=16, le=8192)
    """GeoTIFF: window side in pixels (default: the model's input size)."""
    window_m: float | None = Field(None, gt=0, allow_inf_nan=False)
    """GeoTIFF: window side in metres instead of pixels; each scene's windows are sized from its own GSD (from
    its transform and CRS, any CRS), so every window covers the same ground."""
    match_gsd: bool = False
    """GeoTIFF: windows of the ground size the model was trained on (input size x the card's input GSD), so the
    model sees each scene at the scale it learned; the model must record its GSD."""
    overlap: float = Field(0.0, ge=0, lt=1)
    """GeoTIFF: fraction of a window shared with its neighbour."""
    bands: list[int] | None = Field(None, min_length=1, max_length=3)
    """GeoTIFF: the bands to read as R, G, B (or one band as grey), 1-based, e.g. ``[3, 2, 1]`` for a B, G, R,
    NIR raster; default: from the raster's colour interpretation (a raster with 4+ bands and none is refused)."""
    max_nodata: float = Field(0.5, ge=0, le=1)
    """A tile whose share of nodata pixels (nodata value, alpha/mask, NaN, beyond the scene's edge, transparent
    PNG pixels) exceeds this is recorded as ``nodata`` and not scored."""

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) not in (1, 3) or any(b < 1 for b in value)):
            raise ValueError(f"{value}: give 3 bands (R, G, B) or 1 (grey), numbered from 1")
        return value

    @model_validator(mode="after")
    def _one_window_size(self) -> "TilesConfig":
        given = [n for n in ("chip_size", "window_m") if getattr(self, n) is not None] + \
            (["match_gsd"] if self.match_gsd else [])
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} both size the windows: set one")
        return self


class RegionConfig(_Strict):
    bbox: tuple[float, float, float, float] | None = None
    """west, south, east, north in degrees (EPSG:4326); ``west > east`` crosses the antimeridian (RFC 7946),
    e.g. ``[179.5, 68.4, -179.0, 69.4]``."""
    geojson: str | None = None
    """A GeoJSON file/URI (Polygon/MultiPolygon geometry, Feature or FeatureCollection) in EPSG:4326."""

    @model_validator(mode="after")
    def _valid(self) -> "RegionConfig":
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w <= 180 and -180 <= e <= 180 and w != e and -90 <= s < n <= 90):
                raise ValueError(f"bbox {list(self.bbox)} must be west != east within [-180, 180] (west > east "
                                 "crosses the antimeridian) and south < north within [-90, 90]")
        return self


class SweepExplainConfig(_Strict):
    enabled: bool = True
    """Grad-CAM overlays (PNG) for tiles at or above the threshold."""
    method: CamMethod = "gradcam"


class SweepFootprintConfig(_Strict):
    """Footprint sweeps (a footprint model as ``model``; docs/footprints.md)."""

    overlap: float = Field(0.25, ge=0, le=0.5)
    """Fraction of a window shared with each neighbour; overlapping windows are blended (weights falling to
    their edges), so seams vanish."""
    simplify_m: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Douglas-Peucker tolerance in metres for the footprints' outlines (0: exact pixel edges)."""
    min_area_m2: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Footprints smaller than this (geodesic m²) are left out (besides the card's minimum footprint size)."""
    block: int = Field(512, ge=64, le=8192)
    """Rows per block when stitching and tracing: memory holds about one block row of the scene."""
    metatile: int = Field(8, ge=1, le=64)
    """XYZ/TMS trees: tiles per side of a metatile, the unit mosaicked (in EPSG:3857), stitched, traced and
    resumed like a scene; footprints are merged across metatile borders. Larger metatiles give windows more
    context across tile borders and write fewer files; memory holds one metatile (8 x 8 tiles of 256 px:
    16 MB)."""


class SweepAdaptConfig(_Strict):
    """Adaptation to the swept region without labels (docs/sweeps.md, "Adapting to a new region"). Each is
    recorded in ``sweep.json`` and ``summary.json``; measured on labelled regions in docs/results.md."""

    batchnorm: bool = False
    """AdaBN: before inference, re-estimate the model's BatchNorm statistics on ``batchnorm_tiles`` tiles drawn
    at random from the swept tiles; the adapted model is saved as ``OUTPUT/adapted_model/`` and scores every
    tile (its version is in each row)."""
    batchnorm_tiles: int = Field(512, ge=1)
    prior: bool = False
    """Move the threshold to the landslide share of the swept tiles as estimated by EM on the model's
    (temperature-calibrated) probabilities (Saerens et al. 2002); applied when the inventory is written, so a
    finished sweep re-run with it changed re-writes the inventory without scoring again."""
    calibrated: bool = False
    """Write temperature-scaled probabilities (the card's ``calibration``, fitted on validation) into the
    inventory, with the threshold mapped the same way (decisions unchanged). Shards keep raw probabilities."""
    seed: int = 0
    """Seed of the AdaBN tile sample."""


class SweepRayConfig(_Strict):
    """How ``ray_jobs.sweep`` spreads the sweep over a cluster; local sweeps ignore it."""

    read_concurrency: int | None = Field(None, ge=1)
    """Parallel read+decode tasks (default: Ray Data decides)."""
    read_cpus: float = Field(1.0, gt=0)
    """CPUs reserved per read task (fractions let reads share cores with the actors)."""
    inference_actors: int = Field(1, ge=1)
    """Model replicas in the actor pool."""
    fuse_reads: bool | Literal["auto"] = "auto"
    """Read and decode tiles inside the inference actors (one stage, ``read_threads`` threads per actor)
    instead of separate read tasks. ``auto`` (the default): fused when the actors have no GPU, separate when
    they have. Separate reads scale I/O and decoding apart from the model and overlap them with inference, which
    GPU actors need; on CPU-only nodes fused reads with all cores for the actors were 1.55x faster
    (benchmarks/results/ray_sweep_reads.json, 2 cores)."""
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)

    @property
    def reads_fused(self) -> bool:
        """Whether reads run inside the inference actors (``fuse_reads``, with ``auto`` resolved)."""
        return self.gpus_per_actor == 0 if self.fuse_reads == "auto" else bool(self.fuse_reads)


class SweepConfig(_Strict):
    name: str = "sweep"
    model: str
    """Checkpoint folder/URI (model.safetensors + model_card.json)."""
    tiles: TilesConfig
    region: RegionConfig = RegionConfig()
    """Only tiles intersecting the region are read; empty: every tile of the source."""
    output: str
    threshold: float | None = Field(None, gt=0, lt=1)
    """Decision threshold; default: the one in the model card (chosen on validation data)."""
    batch_size: int = Field(32, ge=1)
    shard_size: int = Field(256, ge=1)
    """Tiles per output shard: the unit of resumption."""
    read_threads: int = Field(4, ge=1)
    """Local sweeps: threads reading and decoding tiles while the model runs."""
    device: str = "auto"
    tta: TtaMode | None = None
    """Test-time augmentation; default: the mode in the model card (with its validation threshold)."""
    max_image_pixels: int = Field(64_000_000, gt=0)
    max_tile_bytes: int = Field(64 * 1024 * 1024, gt=0)
    explain: SweepExplainConfig = SweepExplainConfig()
    merge_polygons: bool = True
    """Also write adjacent positive tiles dissolved into polygons (``landslide_areas.geojson``)."""
    adapt: SweepAdaptConfig = SweepAdaptConfig()
    """Adaptation to the swept region without labels (all off by default)."""
    footprints: SweepFootprintConfig = SweepFootprintConfig()
    """Footprint models only: window overlap, simplification, minimum area."""
    ray: SweepRayConfig = SweepRayConfig()


class ServeDeploymentConfig(_Strict):
    """Replicas and resources of one Serve deployment."""

    num_replicas: int = Field(1, ge=1)
    autoscaling: dict[str, Any] | None = None
    """Ray Serve autoscaling_config (min_replicas, max_replicas, target_ongoing_requests, ...); replaces
    num_replicas when set."""
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    max_ongoing_requests: int = Field(16, ge=1)
    max_queued_requests: int = Field(64, ge=-1)
    """Requests waiting beyond this are refused at once with 503 + Retry-After (-1: unbounded)."""


class ServeAppConfig(_Strict):
    """The HTTP endpoint (``serve/app.py``): the ``args`` of the Serve application."""

    model: str
    """Checkpoint folder/URI (model.safetensors + model_card.json), local or gs://."""
    device: str = "auto"
    tta: TtaMode | None = None
    """Test-time augmentation; default: the mode in the model card (with its validation threshold)."""
    threshold: float | None = Field(None, gt=0, lt=1)
    max_request_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_batch_images: int = Field(16, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    auth_token_env: str | None = None
    """Name of an environment variable holding the bearer token; when set, /v1/* requires
    ``Authorization: Bearer <token>`` and a missing or empty variable fails the deployment."""
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    cam_methods: list[CamMethod] = Field(default_factory=lambda: list(get_args(CamMethod)))
    footprint_model: str | None = None
    """A footprint (segmentation) model's checkpoint folder/URI for ``POST /v1/segment``; without one that route
    answers 404."""
    footprint_threshold: float | None = Field(None, gt=0, lt=1)
    """The footprint model's pixel threshold; default: the one in its card (chosen on validation masks)."""
    max_footprints: int = Field(1000, ge=1)
    """At most this many footprints per answer, the largest first (``truncated`` says when some were left out)."""
    classifier: ServeDeploymentConfig = ServeDeploymentConfig(max_ongoing_requests=64, max_queued_requests=256)
    """The ingress replicas, which also classify (HTTP routes, checks and the batched classifier in one
    deployment: one hop per classify request). A replica holds at most ``max_ongoing_requests +
    max_queued_requests`` images being classified or waiting for a batch; more get 503 + Retry-After."""
    explainer: ServeDeploymentConfig = ServeDeploymentConfig(num_cpus=0.5, max_ongoing_requests=2,
                                                             max_queued_requests=16)
    segmenter: ServeDeploymentConfig = ServeDeploymentConfig(max_ongoing_requests=4, max_queued_requests=32)
    """The footprint model's replicas (``footprint_model``)."""

    @model_validator(mode="before")
    @classmethod
    def _no_separate_ingress(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ingress" in data:
            raise ValueError("ingress: the ingress and the classifier are one deployment now (one hop per classify "
                             "request); move its settings into classifier and remove ingress")
        return data


def _format_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc, kind = [], None
        for i, p in enumerate(err["loc"]):  # a discriminated union's tag is not a field: say it after the message
            prev = err["loc"][i - 1] if i else None
            if p in EXPERIMENT_KINDS and (prev == "experiment" or isinstance(prev, int) and "parts" in err["loc"][:i]):
                kind = p
                continue
            loc.append(str(p))
        parts.append(f"{'.'.join(loc) or '<root>'}: {err['msg']}" + (f" (experiment kind {kind!r})" if kind else ""))
    return f"{source}: invalid config: " + "; ".join(parts)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_config(raw: dict, source: str = "<config>", overrides: dict[str, Any] | None = None,
                 schema: type[BaseModel] = RunConfig) -> Any:
    """Validate a config tree against ``schema`` (a run config by default); ``overrides`` maps dotted keys
    (``train.epochs``) to values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: config must be a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` arguments -> overrides for :func:`load_config` (values parsed as YAML:
    ``train.epochs=3`` -> 3, ``ray.fuse_reads=true`` -> True). A malformed item is a :class:`ConfigError`."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_config(uri: str, overrides: dict[str, Any] | None = None, schema: type[BaseModel] = RunConfig) -> Any:
    """Load a YAML config (a run config by default) from a path or URI."""
    try:
        text = storage.read_text(uri)
    except StorageError as exc:
        raise ConfigError(f"config file {exc}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{uri}: not valid YAML ({exc})") from exc
    return parse_config(raw, uri, overrides, schema)


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a config, as written into run folders."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
