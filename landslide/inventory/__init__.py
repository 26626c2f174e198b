"""Inventories: tile indexes and regions, sharded resumable sweeps through the shared
:class:`~landslide.inference.predictor.Predictor`, and geo outputs (GeoParquet, GeoJSON, rasters, maps)."""

from landslide.inventory.sweep import finalize, infer_tiles, plan_sweep, read_tiles, run_sweep

__all__ = ["finalize", "infer_tiles", "plan_sweep", "read_tiles", "run_sweep"]
