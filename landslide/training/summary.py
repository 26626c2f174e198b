"""The run summary (``summary.json`` of a training run), typed.

Written by :func:`landslide.training.run.finish_run` (local runs and Ray Train alike), read by experiments
(:mod:`landslide.experiments.report`) and the CLI. Metrics are dicts keyed by metric name (``accuracy``,
``precision``, ``recall``, ``specificity``, ``f1``, ``mcc``, ``roc_auc``, ``pr_auc``); intervals are
``[low, high]`` 95 % bootstrap intervals (:mod:`landslide.evaluation.metrics`). Unknown fields are kept (a
runner may add its own, e.g. the number of Ray Train workers).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from landslide import storage
from landslide.errors import StorageError

TEST_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "roc_auc", "pr_auc")
"""The test metrics a summary reports (each with an interval)."""


class RunSummary(BaseModel):
    """What one training run produced and how well its model did."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    name: str
    output_dir: str
    model_dir: str
    backbone: str
    image_size: int
    best_epoch: int | None = None
    epochs_run: int = 0
    resumed_from_epoch: int | None = None
    threshold: float
    """The model card's threshold (chosen on validation data)."""
    trainable_params: int | None = None
    total_params: int | None = None
    freeze: dict[str, Any] = Field(default_factory=dict)
    model_size_mb: float | None = None
    depth: int | None = None
    """Parameter layers (Conv/Linear/Norm with weights) of the backbone and head."""
    train_images: int | None = None
    skipped_images: int = 0
    best_epoch_metrics: dict[str, float] = Field(default_factory=dict)
    train_images_per_s: float | None = None
    splits: dict[str, Any] = Field(default_factory=dict)
    inputs: str = "image"
    threshold_rules: dict[str, float] | None = None
    """The threshold each rule (``fixed``, ``f1``, ``youden``) chose on the validation split."""
    val_metrics: dict[str, float] | None = None
    """Validation metrics at the chosen threshold: what experiments select models by."""
    tag_leakage: dict[str, Any] | None = None
    confounds: dict[str, Any] | None = None
    """The acquisition-confound check of the training split: verdict, confounds, combined AUC."""
    test_metrics: dict[str, float | None] | None = None
    test_intervals: dict[str, Any] = Field(default_factory=dict)
    test_images: int | None = None
    test_by_region: dict[str, dict[str, Any]] | None = None
    """Test metrics (with ``n`` and ``intervals``) per value of the data's ``region`` column, when it has one."""
    inference_images_per_s: float | None = None
    tta: str | None = None
    test_metrics_without_tta: dict[str, float | None] | None = None
    tta_minus_without: dict[str, Any] | None = None
    test_metrics_without_tags: dict[str, float | None] | None = None
    test_intervals_without_tags: dict[str, Any] = Field(default_factory=dict)
    tags_with_minus_without: dict[str, Any] | None = None
    test_tag_coverage: dict[str, Any] | None = None
    test_size_metrics: dict[str, Any] | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``summary.json``."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: str = "summary.json") -> "RunSummary":
        """Validate a summary's JSON form; StorageError naming the bad fields."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            raise StorageError(f"{source}: not a run summary ({problems})") from None

    @classmethod
    def read(cls, uri: str) -> "RunSummary":
        """Read ``summary.json`` at ``uri``."""
        return cls.from_json(storage.read_json(uri), uri)
