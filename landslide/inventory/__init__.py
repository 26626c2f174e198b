"""Inventories: tile indexes and regions, the shared :class:`Predictor` (sweeps and the HTTP endpoint),
sharded resumable sweeps, and geo outputs (GeoParquet, GeoJSON)."""

from landslide.inventory.predictor import Predictor, prepare_image
from landslide.inventory.sweep import finalize, infer_tiles, plan_sweep, read_tiles, run_sweep

__all__ = ["Predictor", "finalize", "infer_tiles", "plan_sweep", "prepare_image", "read_tiles", "run_sweep"]
