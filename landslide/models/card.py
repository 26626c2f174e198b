"""The model card: everything needed to rebuild and use a model, typed (``model_card.json`` beside the weights).

Like timm's ``PretrainedCfg`` and raster-vision's model bundle, the card travels with the weights and is the
one place that says how to feed the model (input size, normalisation, tags), how to read its output (the
decision threshold chosen on validation data, per test-time-augmentation mode) and where it came from
(backbone, pretrained weights, training data, metrics, library versions). Training writes it; evaluation,
sweeps and the endpoint read it through :class:`ModelCard` and nothing else.

Format versions (``format``), each read by :func:`upgrade_card`:

- **1** (until 0.1.0, December 2026): ``tta`` and ``thresholds_by_tta`` only when a run chose test-time
  augmentation; the weights' SHA-256 computed at load time only.
- **2**: ``tta`` always present and ``thresholds_by_tta`` always holds the threshold of the card's own mode;
  ``weights_sha256`` recorded when the weights are written and checked when they are loaded.

Unknown top-level fields are kept (a card edited by hand, or written by a newer minor version, round-trips);
a card of a newer *format* is refused with the version to upgrade to.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from landslide import CLASSES
from landslide.config import SegmentationArchitecture, Task, TtaMode
from landslide.errors import CheckpointError

CARD_FORMAT = 2
"""The format this version writes; :func:`upgrade_card` reads every earlier one."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, use_attribute_docstrings=True)


class Normalization(_Section):
    """Per-channel normalisation of RGB in [0, 1]: ``(x - mean) / std`` (the backbone's pretraining values)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class TagsSection(_Section):
    """The tag branch of a multi-modal model (:mod:`landslide.models.multimodal`)."""

    tag_schema: dict[str, Any] = Field(alias="schema")
    """:meth:`landslide.data.tags.TagSchema.to_json` of the fitted schema (vocabularies, numeric scaling)."""
    embedding_dim: int = 4
    hidden: int = 32
    drop_all: float = 0.3
    drop_each: float = 0.1
    without_tags: str = "supported: every tag unknown"
    leakage: dict[str, Any] | None = None
    """The training split's tag-leakage check (:mod:`landslide.evaluation.leakage`), when it ran."""

    def options(self) -> dict[str, Any]:
        """The :class:`~landslide.models.multimodal.TagEncoder` constructor options."""
        return {"embedding_dim": self.embedding_dim, "hidden": self.hidden, "drop_all": self.drop_all,
                "drop_each": self.drop_each}


class SizeHead(_Section):
    """The optional landslide-size head: one logit per size class."""

    classes: list[str]
    output: str = "one logit per size class (softmax); meaningful for landslides only"
    column: str | None = None
    """The manifest column the head was trained on (evaluation scores it where the column exists)."""


class ModelCard(_Section):
    """A model card (format :data:`CARD_FORMAT`). Read one with :func:`landslide.models.checkpoint.read_card`,
    write it with :func:`~landslide.models.checkpoint.save_checkpoint` / ``write_card``."""

    format: int = CARD_FORMAT
    task: Task = "classification"
    """``classification``: one probability per chip; ``segmentation``: a footprint model, one probability per
    pixel (:mod:`landslide.models.segmentation`), ``threshold`` then applies to pixels."""
    architecture: SegmentationArchitecture | None = None
    """Footprint models: the decoder (``unet``, ``unetplusplus``, ``fpn``, ``deeplabv3plus``)."""
    name: str
    """Run name (defaults to the backbone); reported with every prediction."""
    backbone: str
    """Registry name (:mod:`landslide.models.registry`)."""
    timm_name: str | None = None
    input_size: int = Field(gt=0)
    """Square input side in pixels; every input is resized to it."""
    normalization: Normalization
    classes: tuple[str, str] = CLASSES
    positive_class: str = CLASSES[1]
    output: str = "one logit; sigmoid(logit) = probability of landslide"
    threshold: float = Field(ge=0, le=1)
    """Decision threshold on the probability for the card's own ``tta`` mode (chosen on validation data)."""
    tta: TtaMode = "none"
    """Test-time augmentation the threshold was chosen with; sweeps and the endpoint use it by default."""
    thresholds_by_tta: dict[TtaMode, float] = Field(default_factory=dict)
    """Validation thresholds per test-time-augmentation mode (always the card's own mode; ``none`` too when
    the run used TTA): a user who switches TTA off gets the threshold chosen without it."""
    threshold_selection: dict[str, Any] | None = None
    min_object_px: int = Field(1, ge=1)
    """Footprint models: predicted footprints smaller than this many pixels at the input size are dropped (a
    minimum mapping unit, chosen on validation masks to maximise object F1 at IoU 0.5); 1 keeps every one."""
    gsd_m: float | None = Field(None, gt=0)
    """Median ground sampling distance (m/px) of the training chips, when their manifest gave ``gsd_m``;
    None: unknown. Evaluation reports the data's GSD beside it."""
    input_gsd: dict[str, Any] | None = None
    """The GSD at which the model saw its training chips (m per *input* pixel: chip GSD x chip side / input
    size; ``median_m``, ``p10_m``, ``p90_m``, ``chips``): what ``--match-gsd`` resamples inputs to
    (:mod:`landslide.data.gsd`). None when the chips' GSD is unknown."""
    calibration: dict[str, Any] | None = None
    """Temperature scaling fitted on validation (``temperature``, ECE and Brier before/after): evaluation
    reports calibrated probabilities beside the raw ones (:func:`landslide.evaluation.metrics.fit_temperature`)."""
    cam_layer: str | None = None
    dropout: float = 0.2
    pretrained: dict[str, Any] = Field(default_factory=dict)
    """Where the initial weights came from (:func:`landslide.models.weights.load_pretrained`)."""
    parameters: int | None = None
    inputs: str = "image"
    """``image`` or ``image + tags``."""
    created: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    tags: TagsSection | None = None
    size_head: SizeHead | None = None
    freezing: dict[str, Any] | None = None
    init_from: str | None = None
    training: dict[str, Any] | None = None
    """Training data summary, splits, epochs, seed, history."""
    metrics: dict[str, Any] | None = None
    """Test metrics with intervals (written after the test evaluation)."""
    selection: dict[str, Any] | None = None
    """How an experiment chose this model among its variants (``best_model`` exports)."""
    weights_sha256: str | None = None
    """SHA-256 of ``model.safetensors``: the model's version in inventories and responses; checked on load."""
    adaptation: dict[str, Any] | None = None
    """How this model was adapted to a region without labels (e.g. AdaBN on a sweep's tiles: method, images,
    the source model's version)."""

    def threshold_for(self, tta: str | None = None) -> float:
        """The validation threshold for test-time augmentation ``tta`` (default: the card's mode); a mode the
        run did not calibrate falls back to the card's threshold."""
        return float(self.thresholds_by_tta.get(tta or self.tta, self.threshold))  # type: ignore[call-overload]

    @property
    def history(self) -> list[dict] | None:
        """Per-epoch training history, when recorded."""
        return (self.training or {}).get("history")

    @property
    def train_prior(self) -> float | None:
        """The landslide share of the training split (None when the card does not record it)."""
        train = ((self.training or {}).get("splits") or {}).get("train") or {}
        return train.get("landslide", 0) / train["samples"] if train.get("samples") else None

    @property
    def temperature(self) -> float:
        """The temperature fitted on validation (1.0: none)."""
        return float((self.calibration or {}).get("temperature") or 1.0)

    def prediction_info(self, threshold: float | None = None, tta: str | None = None) -> dict:
        """The model identity recorded with every prediction (``Predictor.info``): name, backbone, version,
        input size (px), decision threshold (default: the validation one for ``tta``), inputs, test-time
        augmentation mode (default: the card's) and training GSD (m per input pixel, or None)."""
        tta = tta or self.tta
        return {"name": self.name, "backbone": self.backbone, "version": self.version,
                "input_size": self.input_size, "threshold": float(self.threshold_for(tta) if threshold is None
                                                                  else threshold),
                "inputs": self.inputs, "tta": tta, "input_gsd_m": (self.input_gsd or {}).get("median_m")}

    @property
    def version(self) -> str:
        """Short model version: the first 12 hex digits of the weights' SHA-256 (``unknown`` before saving)."""
        return (self.weights_sha256 or "unknown")[:12]

    def transform(self):
        """The deterministic input transform: uint8 ``(H, W, 3)`` -> float ``(3, S, S)``, resized to
        ``input_size`` (antialiased) and normalised (:func:`landslide.data.transforms.build_transform`)."""
        from landslide.data.transforms import build_transform  # torchvision: only where images are transformed

        return build_transform(self.input_size, self.normalization.mean, self.normalization.std)

    def to_json(self) -> dict[str, Any]:
        """The JSON form written to ``model_card.json`` (tags' schema under its JSON name ``schema``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, raw: Any, source: str = "model card") -> "ModelCard":
        """Validate a card's JSON form of any format (upgraded first); CheckpointError names each bad field."""
        if not isinstance(raw, dict):
            raise CheckpointError(f"{source}: a model card is a JSON object, got {type(raw).__name__}")
        try:
            return cls.model_validate(upgrade_card(raw, source))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}"
                                 for e in exc.errors()[:5])
            raise CheckpointError(f"{source}: invalid model card ({problems})") from None


def _v1_to_v2(card: dict) -> dict:
    card = dict(card)
    if card.get("backbone") and not card.get("name"):
        card["name"] = card["backbone"]
    if "threshold" in card:
        tta = card.setdefault("tta", "none")
        card["thresholds_by_tta"] = {tta: card["threshold"], **(card.get("thresholds_by_tta") or {})}
    return card


UPGRADERS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2}
"""Format n -> n + 1; a new format adds one entry."""


def upgrade_card(raw: dict, source: str = "model card") -> dict:
    """A card's JSON of any format this version knows (a card without ``format`` is format 1), upgraded to
    :data:`CARD_FORMAT`. Raises CheckpointError for a format newer than this version reads."""
    fmt = raw.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CheckpointError(f"{source}: model card format {fmt!r} is not a positive integer")
    if fmt > CARD_FORMAT:
        raise CheckpointError(f"{source}: model card format {fmt} was written by a newer landslide (this one reads "
                              f"formats 1 to {CARD_FORMAT}); upgrade landslide to use this model")
    card = dict(raw)
    while fmt < CARD_FORMAT:
        card = UPGRADERS[fmt](card)
        fmt += 1
    card["format"] = CARD_FORMAT
    return card
