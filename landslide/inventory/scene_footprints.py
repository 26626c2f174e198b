"""Footprints of a whole GeoTIFF scene with a footprint model: overlapping windows at the model's training
scale, stitched into one probability raster (a Cloud-Optimized GeoTIFF), then traced into polygons block by
block and merged across block seams, so memory stays that of a window and a block row however large the scene.

This is the scene half of footprint sweeps (issue 21); the sweep driver (tile indexes, shards, Ray Data) builds
on it.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass

import numpy as np
import shapely

from landslide.data.gsd import MAX_RESAMPLING, raster_gsd_m
from landslide.errors import ConfigError
from landslide.inference.footprints import FootprintPredictor
from landslide.inventory.footprints import touching_groups, trace
from landslide.inventory.stitch import NODATA, ProbabilityMosaic, blend_weights, window_offsets
from landslide.inventory.tiles import NoDataError, open_raster, read_window_from


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


def _window_batches(predictor: FootprintPredictor, uri: str, windows: list[tuple[int, int]], size: int, bands,
                    batch_size: int):
    """Batches of windows read from the scene (opened once) and prepared for the model:
    ``(images, valid masks, (col, row) offsets, windows without data)``."""
    from landslide.data.rasters import band_plan

    with open_raster(uri) as ds:
        plan = band_plan(ds, bands, uri)
        for start in range(0, len(windows), batch_size):
            images, valid, where, skipped = [], [], [], 0
            for c, r in windows[start:start + batch_size]:
                try:
                    tile = read_window_from(ds, uri, f"{c},{r},{size},{size}", plan)
                except NoDataError:
                    skipped += 1
                    continue
                images.append(predictor.prepare(tile.rgb))
                valid.append(tile.valid)
                where.append((c, r))
            yield images, valid, where, skipped


def prefetch(items, depth: int = 2):
    """Iterate ``items`` (a generator) in a background thread, up to ``depth`` items ahead, so that reading and
    decoding overlap the model; its exceptions are raised here, and stopping early stops the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))
        finally:
            items.close()

    thread = threading.Thread(target=run, name="landslide-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def stitch_scene(predictor: FootprintPredictor, uri: str, out_uri: str, window_px: int | None = None,
                 overlap: float = 0.25, batch_size: int = 8, bands=None, workdir: str | None = None,
                 block: int = 512, threshold: float | None = None) -> dict:
    """Predict every window of the GeoTIFF/COG scene at ``uri`` (:func:`scene_grid`), blend the windows'
    probabilities (brought back to scene pixels, nodata pixels left out) into one raster aligned with the scene
    and write it to ``out_uri`` as a Cloud-Optimized GeoTIFF (nodata :data:`landslide.inventory.stitch.NODATA`
    where no data was read). Windows are read (the scene opened once) and prepared in a background thread
    while the model runs. With a pixel ``threshold``, footprints are traced block row by block row as the rows
    are finished (:class:`RowTracer`; the same as :func:`trace_raster` on the written COG). Returns ``{uri,
    windows, windows_nodata, window_px, overlap_px, gsd_m, reason, width, height, crs}``, and ``footprints``
    with a threshold."""
    import torch
    import torch.nn.functional as F

    with open_raster(uri) as ds:
        width, height, transform, crs = ds.width, ds.height, ds.transform, ds.crs
    grid = scene_grid(predictor, raster_gsd_m(crs, transform, width, height), window_px, overlap)
    size, ov = grid.window_px, grid.overlap_px
    weights = blend_weights(size, ov)
    windows = [(c, r) for r in window_offsets(height, size, ov) for c in window_offsets(width, size, ov)]
    tracer = RowTracer(threshold, width, height, transform) if threshold is not None else None
    # finished block rows are traced in a thread of their own (in order), beside the model
    tracing = cf.ThreadPoolExecutor(1, thread_name_prefix="landslide-trace") if tracer else None
    traced: list[cf.Future] = []
    skipped = 0
    try:
        with ProbabilityMosaic(width, height, transform, crs, workdir, block,
                               on_block=(lambda top, rows: traced.append(tracing.submit(tracer.add, top, rows)))
                               if tracer else None) as mosaic:
            for images, valid, where, empty in prefetch(_window_batches(predictor, uri, windows, size, bands,
                                                                        batch_size)):
                skipped += empty
                if not images:
                    continue
                probs = torch.from_numpy(predictor.predict(np.stack(images)))[:, None]
                if size != predictor.input_size:
                    probs = F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False)
                for (c, r), p, ok in zip(where, probs[:, 0].numpy(), valid):
                    if ok is not None:
                        p = np.where(ok, p, np.nan)
                    mosaic.add(c, r, p, weights)
            mosaic.finish()
            for future in traced:  # tracing errors surface here
                future.result()
            mosaic.write_cog(out_uri)
    finally:
        if tracing is not None:
            tracing.shutdown(wait=True, cancel_futures=True)
    out = {"uri": out_uri, "windows": len(windows), "windows_nodata": skipped, "window_px": size,
           "overlap_px": ov, "gsd_m": grid.gsd_m, "reason": grid.reason, "width": width, "height": height,
           "crs": crs.to_string() if crs else None}
    if tracer is not None:
        out["footprints"] = tracer.finish()
    return out


class RowTracer:
    """Footprints of a probability raster fed block row by block row, top to bottom (:meth:`add`), merged
    across the rows' seams as if traced whole (8-connected, as :func:`landslide.inventory.footprints.trace`).
    Blocks are traced and joined in pixel coordinates (exact on the seams whatever the georeference) and each
    footprint is mapped through ``transform`` once (:meth:`finish`); a footprint is final once it does not
    reach the seam below its row, so memory holds one block row and the footprints crossing a seam."""

    def __init__(self, threshold: float, width: int, height: int, transform, nodata: float = NODATA):
        self.threshold, self.width, self.height, self.nodata = threshold, width, height, nodata
        self.transform = transform
        self.done: list[dict] = []
        self.open_parts: list[dict] = []  # footprints reaching the seam above the next row
        self.next_top = 0

    def add(self, top: int, probability: np.ndarray) -> None:
        """The rows from ``top`` (``(rows, width)`` probabilities); ValueError out of order."""
        from rasterio.transform import Affine

        if top != self.next_top:
            raise ValueError(f"rows from {top}: expected rows from {self.next_top} (top to bottom)")
        rows = probability.shape[0]
        traced = trace(probability, self.threshold, Affine.translation(0, top), self.nodata)
        seam_above = _seam(top, self.width) if top > 0 else None
        seam_below = _seam(top + rows, self.width) if top + rows < self.height else None
        for f in traced:
            f["_below"] = seam_below is not None and f["geometry"].intersects(seam_below)
        upper = [f for f in traced if seam_above is not None and f["geometry"].intersects(seam_above)]
        rest = [f for f in traced if not any(f is u for u in upper)]
        groups = _merge_across(self.open_parts, upper)
        self.open_parts = []
        for f in groups + rest:
            (self.open_parts if f.pop("_below", False) else self.done).append(f)
        self.next_top = top + rows

    def finish(self) -> list[dict]:
        """Every footprint, the most pixels first: ``geometry`` (shapely, in the raster's CRS), ``pixels``,
        ``mean_probability``, ``max_probability``."""
        done = self.done + self.open_parts
        self.done, self.open_parts = [], []
        t = self.transform  # pixel (col, row) -> CRS (x, y) = (a col + b row + c, d col + e row + f)
        matrix, offset = np.array([[t.a, t.d], [t.b, t.e]]), np.array([t.c, t.f])
        mapped = shapely.transform(np.array([f["geometry"] for f in done], dtype=object),
                                   lambda xy: xy @ matrix + offset)  # all footprints in one call
        for f, geom in zip(done, mapped):
            f.pop("_below", None)
            f["geometry"] = geom
        done.sort(key=lambda f: -f["pixels"])
        return done


def trace_raster(uri: str, threshold: float, block: int = 512) -> list[dict]:
    """Footprints of a probability raster (a stitched COG) traced block row by block row and merged across the
    rows' seams, as if traced whole (:class:`RowTracer`): one dict per footprint, the most pixels first,
    ``geometry`` (shapely, in the raster's CRS), ``pixels``, ``mean_probability``, ``max_probability``."""
    from rasterio.windows import Window

    with open_raster(uri) as ds:
        tracer = RowTracer(threshold, ds.width, ds.height, ds.transform,
                           ds.nodata if ds.nodata is not None else NODATA)
        for top in range(0, ds.height, block):
            tracer.add(top, ds.read(1, window=Window(0, top, ds.width, min(block, ds.height - top))))
    return tracer.finish()


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
