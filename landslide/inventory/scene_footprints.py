"""Footprints of a whole GeoTIFF scene with a footprint model: overlapping windows at the model's training
scale, stitched into one probability raster (a Cloud-Optimized GeoTIFF), then traced into polygons block by
block and merged across block seams, so memory stays that of a window and a block row however large the scene.

This is the scene half of footprint sweeps (issue 21); the sweep driver (tile indexes, shards, Ray Data) builds
on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity

from landslide.data.gsd import MAX_RESAMPLING, raster_gsd_m
from landslide.errors import ConfigError
from landslide.inference.footprints import FootprintPredictor
from landslide.inventory.footprints import touching_groups, trace
from landslide.inventory.stitch import NODATA, ProbabilityMosaic, blend_weights, window_offsets
from landslide.inventory.tiles import NoDataError, open_raster, read_window


@dataclass(frozen=True)
class SceneGrid:
    """How a scene is cut: windows of ``window_px`` scene pixels overlapping by ``overlap_px``, each resized to
    the model's input size; ``gsd_m`` is the scene's, ``reason`` says how the window size was chosen."""

    window_px: int
    overlap_px: int
    gsd_m: float | None
    reason: str


def scene_grid(predictor: FootprintPredictor, gsd_m: float | None, window_px: int | None = None,
               overlap: float = 0.25) -> SceneGrid:
    """The window size in scene pixels: ``window_px`` when given; else the model's input size scaled from the
    GSD it was trained at (its card's ``input_gsd``) to the scene's, so the model sees the scene at its training
    scale; else (either GSD unknown) the input size itself. ConfigError for an overlap outside [0, 0.5] or a
    scale change beyond :data:`landslide.data.gsd.MAX_RESAMPLING`."""
    if not 0 <= overlap <= 0.5:
        raise ConfigError(f"overlap {overlap}: give a fraction of the window in [0, 0.5]")
    size = predictor.input_size
    model_gsd = (predictor.card.input_gsd or {}).get("median_m")
    if window_px is not None:
        reason = "given"
    elif model_gsd and gsd_m:
        ratio = model_gsd / gsd_m
        if not 1 / MAX_RESAMPLING <= ratio <= MAX_RESAMPLING:
            raise ConfigError(f"the scene's GSD ({gsd_m:g} m/px) is a factor {ratio:g} from the model's "
                              f"{model_gsd:g} m per input pixel, beyond {MAX_RESAMPLING}; check the scene's CRS")
        window_px = max(int(round(size * ratio)), 8)
        reason = f"the model's input GSD {model_gsd:g} m over the scene's {gsd_m:g} m/px"
    else:
        window_px = size
        reason = "the model's input size (the model or the scene records no GSD)"
    return SceneGrid(window_px, int(round(window_px * overlap)), gsd_m, reason)


def stitch_scene(predictor: FootprintPredictor, uri: str, out_uri: str, window_px: int | None = None,
                 overlap: float = 0.25, batch_size: int = 8, bands=None, workdir: str | None = None,
                 block: int = 512) -> dict:
    """Predict every window of the GeoTIFF/COG scene at ``uri`` (:func:`scene_grid`), blend the windows'
    probabilities (brought back to scene pixels, nodata pixels left out) into one raster aligned with the scene
    and write it to ``out_uri`` as a Cloud-Optimized GeoTIFF (nodata :data:`landslide.inventory.stitch.NODATA`
    where no data was read). Returns ``{uri, windows, windows_nodata, window_px, overlap_px, gsd_m, reason,
    width, height, crs}``."""
    import torch
    import torch.nn.functional as F

    with open_raster(uri) as ds:
        width, height, transform, crs = ds.width, ds.height, ds.transform, ds.crs
    grid = scene_grid(predictor, raster_gsd_m(crs, transform, width, height), window_px, overlap)
    size, ov = grid.window_px, grid.overlap_px
    weights = blend_weights(size, ov)
    windows = [(c, r) for r in window_offsets(height, size, ov) for c in window_offsets(width, size, ov)]
    skipped = 0
    with ProbabilityMosaic(width, height, transform, crs, workdir, block) as mosaic:
        for start in range(0, len(windows), batch_size):
            images, valid, where = [], [], []
            for c, r in windows[start:start + batch_size]:
                try:
                    tile = read_window(uri, f"{c},{r},{size},{size}", bands)
                except NoDataError:
                    skipped += 1
                    continue
                images.append(predictor.prepare(tile.rgb))
                valid.append(tile.valid)
                where.append((c, r))
            if not images:
                continue
            probs = torch.from_numpy(predictor.predict(np.stack(images)))[:, None]
            if size != predictor.input_size:
                probs = F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False)
            for (c, r), p, ok in zip(where, probs[:, 0].numpy(), valid):
                if ok is not None:
                    p = np.where(ok, p, np.nan)
                mosaic.add(c, r, p, weights)
        mosaic.write_cog(out_uri)
    return {"uri": out_uri, "windows": len(windows), "windows_nodata": skipped, "window_px": size,
            "overlap_px": ov, "gsd_m": grid.gsd_m, "reason": grid.reason, "width": width, "height": height,
            "crs": crs.to_string() if crs else None}


def trace_raster(uri: str, threshold: float, block: int = 512) -> list[dict]:
    """Footprints of a probability raster (a stitched COG) traced block row by block row and merged across the
    rows' seams, as if traced whole (8-connected, as :func:`landslide.inventory.footprints.trace`): one dict
    per footprint, the most pixels first, ``geometry`` (shapely, in the raster's CRS), ``pixels``,
    ``mean_probability``, ``max_probability``. Blocks are traced and joined in pixel coordinates (exact on the
    seams whatever the georeference) and each footprint is mapped to the CRS once; a footprint is final once it
    does not reach the seam below its row, so memory holds one block row and the footprints crossing a seam."""
    from rasterio.transform import Affine
    from rasterio.windows import Window

    done: list[dict] = []
    open_parts: list[dict] = []  # footprints reaching the seam above the current row
    with open_raster(uri) as ds:
        nodata = ds.nodata if ds.nodata is not None else NODATA
        to_crs = [ds.transform.a, ds.transform.b, ds.transform.d, ds.transform.e, ds.transform.c, ds.transform.f]
        for top in range(0, ds.height, block):
            rows = min(block, ds.height - top)
            traced = trace(ds.read(1, window=Window(0, top, ds.width, rows)), threshold,
                           Affine.translation(0, top), nodata)
            seam_above = _seam(top, ds.width) if top > 0 else None
            seam_below = _seam(top + rows, ds.width) if top + rows < ds.height else None
            for f in traced:
                f["_below"] = seam_below is not None and f["geometry"].intersects(seam_below)
            upper = [f for f in traced if seam_above is not None and f["geometry"].intersects(seam_above)]
            rest = [f for f in traced if not any(f is u for u in upper)]
            groups = _merge_across(open_parts, upper)
            open_parts = []
            for f in groups + rest:
                (open_parts if f.pop("_below", False) else done).append(f)
    done.extend(open_parts)
    for f in done:
        f.pop("_below", None)
        f["geometry"] = shapely.affinity.affine_transform(f["geometry"], to_crs)
    done.sort(key=lambda f: -f["pixels"])
    return done


def _seam(row: int, width: int) -> shapely.LineString:
    """The line between pixel rows ``row - 1`` and ``row``, across the raster, in pixel coordinates."""
    return shapely.LineString([(0, row), (width, row)])


def _merge_across(above: list[dict], below: list[dict]) -> list[dict]:
    """Parts from both sides of a seam joined where they touch (8-connected pixels share at least a corner on
    the seam): connected groups, each one footprint with its geometries unioned, pixels summed, the mean
    probability weighted by pixels and the largest maximum. A group reaches the next seam (``_below``) when one
    of its lower parts does; parts from above that touch nothing below are final (``_below`` False)."""
    parts = above + below
    left, right = np.zeros(0, int), np.zeros(0, int)
    if above and below:
        upper, lower_hits = shapely.STRtree([f["geometry"] for f in below]).query(
            [f["geometry"] for f in above], predicate="intersects")
        left, right = upper, len(above) + lower_hits
    merged = []
    for members in touching_groups(len(parts), left, right):
        chosen = [parts[i] for i in members]
        lower = [parts[i] for i in members if i >= len(above)]
        if len(chosen) == 1:
            f = dict(chosen[0])
            f["_below"] = bool(lower and lower[0].get("_below"))
            merged.append(f)
            continue
        geom = shapely.union_all([f["geometry"] for f in chosen])
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        pixels = sum(f["pixels"] for f in chosen)
        merged.append({"geometry": geom, "pixels": pixels,
                       "mean_probability": sum(f["mean_probability"] * f["pixels"] for f in chosen) / pixels,
                       "max_probability": max(f["max_probability"] for f in chosen),
                       "_below": any(f.get("_below") for f in lower)})
    return merged
