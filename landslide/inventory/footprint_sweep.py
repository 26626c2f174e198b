"""Footprint sweeps: a footprint model over every scene of a region -> a polygon inventory.

``landslide sweep`` runs this when its ``model`` is a footprint model (card ``task: segmentation``);
``ray_jobs.sweep`` runs the same jobs in a Ray Data actor pool. A job (:class:`SceneJob`) is a GeoTIFF/COG
scene (``NAME``: its path below the source, folders joined by ``__``), an XYZ/TMS metatile or one listed tile
(:mod:`landslide.inventory.tile_mosaic` mosaics them into a temporary GeoTIFF). Per job
(:mod:`landslide.inventory.scene_footprints`): overlapping windows at the model's training scale, stitched into
``scenes/NAME.footprint_probability.tif`` (a Cloud-Optimized GeoTIFF), traced block row by block row into
footprints, the card's minimum footprint size applied (scaled to scene pixels), simplified and measured
(``sweep.footprints``), written to ``scenes/NAME.footprints.parquet`` (GeoParquet in the scene's CRS). A job is
the unit of resumption: one whose footprints file records the same settings is not swept again; a job that
fails is recorded and tried again next time; another source or settings in the same output are refused.
Then the jobs' footprints are merged where they touch across borders (and 180°), in lon/lat, streamed into
``footprints.parquet`` (GeoParquet, OGC:CRS84) and ``footprints.geojson`` (RFC 7946, cut at 180°), each with
``area_m2`` (geodesic, WGS84), mean and max probability, pixels, scenes, model name and version; and
``summary.json``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import shapely
import shapely.affinity

from landslide import lonlat, storage
from landslide.config import SweepConfig
from landslide.errors import ConfigError, DataError, LandslideError, StorageError
from landslide.inference.footprints import FootprintPredictor
from landslide.inventory import geo
from landslide.inventory.footprints import measure, simplify_lonlat, touching_groups
from landslide.inventory.maps import _geoparquet_bytes
from landslide.inventory.region import Region, load_region
from landslide.inventory.scene_footprints import stitch_scene
from landslide.inventory.tile_mosaic import TileGroup, fingerprint, listed_tiles, metatiles, write_mosaic
from landslide.inventory.tiles import GEOTIFF_SUFFIXES, open_raster, same_source

log = logging.getLogger(__name__)


def list_scenes(source: str, exclude: str | None = None) -> list[str]:
    """The GeoTIFF/COG scenes of ``source`` (one file, or every .tif/.tiff below a folder, except those under
    ``exclude``: the sweep's own output); DataError when there are none, ConfigError for a source of another
    kind."""
    if source.lower().endswith(GEOTIFF_SUFFIXES):
        if not storage.exists(source):
            raise DataError(f"{source}: not found")
        return [source]
    if not storage.isdir(source):
        raise ConfigError(f"tiles.source {source}: not a GeoTIFF/COG scene or a folder of them")
    def norm(uri: str) -> str:
        return uri.rstrip("/") if storage.is_remote(uri) else os.path.abspath(uri)

    skip = norm(exclude) + "/" if exclude else None
    scenes = [u for u in storage.list_files(source, GEOTIFF_SUFFIXES) if not skip or not norm(u).startswith(skip)]
    if not scenes:
        raise DataError(f"{source}: no GeoTIFF (.tif/.tiff) files")
    return scenes


def scene_key(source: str, uri: str) -> str:
    """A scene's name in the sweep's output: its path below ``source`` without the suffix, folders joined by
    ``__`` (``2024/x.tif`` -> ``2024__x``), so scenes of the same file name in different folders stay apart."""
    import re

    base = source.rstrip("/")
    rel = uri[len(base) + 1:] if uri.startswith(base + "/") else uri.rstrip("/").rsplit("/", 1)[-1]
    rel = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__"))


def _scene_lonlat_box(uri: str) -> shapely.Geometry:
    from rasterio.warp import transform_bounds

    with open_raster(uri) as ds:
        if ds.crs is None:
            raise DataError(f"{uri}: the scene has no CRS; footprints need georeferenced scenes")
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    return lonlat.footprints([west], [south], [east], [north])[0]


def _meets(region: Region, uri: str) -> bool:
    """Whether the scene meets the region; a scene that cannot be read is kept, so that sweeping it records why
    (one bad scene never stops the planning of the others)."""
    try:
        box = _scene_lonlat_box(uri)
    except LandslideError as exc:
        log.warning("%s: %s (recorded when its turn comes)", uri, exc)
        return True
    return shapely.area(shapely.intersection(region.geometry, box)) > 0


def sweep_settings(cfg: SweepConfig, predictor: FootprintPredictor, source_format: str = "geotiff") -> dict:
    """What a scene's footprints depend on besides the scene: recorded with each scene, checked on resume
    (the metatile size only for XYZ/TMS trees, where it decides what a scene is)."""
    exclude = {"block"} if source_format == "xyz" else {"block", "metatile"}
    return {"model_version": predictor.info["version"], "threshold": predictor.threshold,
            "min_object_px": predictor.min_object_px, "chip_size": cfg.tiles.chip_size,
            "bands": cfg.tiles.bands, "footprints": cfg.footprints.model_dump(exclude=exclude)}


def _done(path: str, settings: dict) -> dict | None:
    """A scene's record when its footprints file exists with these ``settings`` (a damaged file: None, swept
    again); ConfigError when it was written with others (another model, threshold or footprint settings)."""
    if not storage.exists(path):
        return None
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(io.BytesIO(storage.read_bytes(path))).metadata or {}
        record = json.loads(meta[b"landslide"])
    except Exception:  # a damaged file is swept again
        return None
    if record.get("settings") != settings:
        raise ConfigError(f"{path} was written with other settings ({record.get('settings')}; now {settings}): "
                          "sweep into another output, or delete it to start again")
    return record


def _scene_frame(measured: list[dict], key: str, min_px: float) -> pd.DataFrame:
    return pd.DataFrame([{"scene": key, "area_m2": f["area_m2"], "pixels": f["pixels"],
                          "mean_probability": f["mean_probability"], "max_probability": f["max_probability"],
                          "edge": f["edge"], "min_px": float(min_px),
                          "wgs84_wkb": shapely.to_wkb(f["geometry_wgs84"])} for f in measured],
                        columns=["scene", "area_m2", "pixels", "mean_probability", "max_probability", "edge",
                                 "min_px", "wgs84_wkb"])


def sweep_scene(predictor: FootprintPredictor, uri: str, cfg: SweepConfig, key: str, settings: dict,
                extra: dict | None = None) -> dict:
    """One scene: stitched probabilities, footprints in its CRS (``scenes/KEY.footprints.parquet``, the last
    file written, so its presence means the scene is done). Footprints away from the scene's edges are
    filtered (the card's minimum size in scene pixels, ``footprints.min_area_m2``) and simplified here; those
    touching an edge are kept exact (``edge``) until :func:`merge_scenes` has joined them with their parts in
    neighbouring scenes. Returns the scene's record for the summary."""
    with open_raster(uri) as ds:
        if ds.crs is None:
            raise DataError(f"{uri}: the scene has no CRS; footprints need georeferenced scenes")
        crs, transform, width, height = ds.crs, ds.transform, ds.width, ds.height
    raster = storage.join(cfg.output, "scenes", f"{key}.footprint_probability.tif")
    fp = cfg.footprints
    stitched = stitch_scene(predictor, uri, raster, cfg.tiles.chip_size, fp.overlap, cfg.batch_size,
                            cfg.tiles.bands, block=fp.block, workdir=None, threshold=predictor.threshold)
    scale = (stitched["window_px"] / predictor.input_size) ** 2  # input pixels -> scene pixels
    min_px = predictor.min_object_px * scale
    outline = shapely.affinity.affine_transform(
        shapely.box(0, 0, width, height).boundary,
        [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f])
    half_pixel = 0.5 * min(abs(transform.a), abs(transform.e))
    traced = stitched["footprints"]
    at_edge = [f["geometry"].distance(outline) < half_pixel for f in traced]
    edge = [f for f, e in zip(traced, at_edge) if e]
    inner = [f for f, e in zip(traced, at_edge) if not e and f["pixels"] >= min_px]
    measured = ([{**f, "edge": False} for f in measure(inner, crs, fp.min_area_m2, fp.simplify_m)]
                + [{**f, "edge": True} for f in measure(edge, crs)])
    frame = _scene_frame(measured, key, min_px)
    record = {"scene": key, "uri": uri, "footprints": len(frame), "probability_raster": raster,
              "windows": stitched["windows"], "windows_nodata": stitched["windows_nodata"],
              "window_px": stitched["window_px"], "window_reason": stitched["reason"],
              "min_footprint_px": math.ceil(min_px), "crs": stitched["crs"], "settings": settings, **(extra or {})}
    data = _geoparquet_bytes(frame, [f["geometry"] for f in measured], crs) if measured else \
        _empty_parquet(frame)
    storage.write_bytes(storage.join(cfg.output, "scenes", f"{key}.footprints.parquet"), _with_metadata(data, record))
    return record


def _empty_parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame.assign(geometry=pd.Series([], dtype=object)), preserve_index=False),
                   buf)
    return buf.getvalue()


def _with_metadata(data: bytes, record: dict) -> bytes:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    meta = {**(table.schema.metadata or {}), b"landslide": json.dumps(record).encode()}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    return buf.getvalue()


FOOTPRINT_COLUMNS = ("area_m2", "pixels", "mean_probability", "max_probability", "scenes")
"""The measured properties of every merged footprint (beside ``footprint_id``, model name and version)."""


def merge_scenes(frames: Iterable[pd.DataFrame], min_area_m2: float = 0.0, simplify_m: float = 0.0
                 ) -> Iterator[list[dict]]:
    """Footprints of all scenes (each scene's ``scenes/NAME.footprints.parquet`` frame, in turn), merged where
    they touch or overlap across scene borders (in lon/lat), as batches of dicts with ``geometry`` (lon/lat, cut
    at 180°), ``area_m2`` (geodesic), ``pixels`` (summed over the scenes' parts), pixel-weighted
    ``mean_probability``, ``max_probability`` and the ``scenes`` it spans.

    Streaming: a footprint away from its scene's edges cannot continue in another scene, so each scene's inner
    footprints are yielded as that scene is read; only the parts kept exact at scene edges (``edge``) wait for
    the last batch, where they are joined, filtered (minimum size in pixels, ``min_area_m2``) and simplified
    (``simplify_m`` metres) whole. Memory grows with the footprints along scene borders, not with the region's
    footprints."""
    edges = []
    for frame in frames:
        if frame.empty:
            continue
        edge = frame["edge"].to_numpy(bool) if "edge" in frame else np.zeros(len(frame), bool)
        inner = frame[~edge]
        yield [{"geometry": g, "area_m2": float(r.area_m2), "pixels": int(r.pixels),
                "mean_probability": float(r.mean_probability), "max_probability": float(r.max_probability),
                "scenes": r.scene} for g, r in zip(shapely.from_wkb(inner["wgs84_wkb"].to_numpy()),
                                                   inner.itertuples(index=False))]
        if edge.any():
            edges.append(frame[edge])
    rows = pd.concat(edges, ignore_index=True) if edges else pd.DataFrame()
    if rows.empty:
        return
    geoms = shapely.from_wkb(rows["wgs84_wkb"].to_numpy())
    scenes = rows["scene"].to_numpy()
    left, right = _touching_pairs(geoms)
    join = scenes[left] != scenes[right]  # parts of one scene were already joined within it
    out = []
    for members in touching_groups(len(rows), left[join], right[join]):
        part = rows.iloc[members]
        geom = geoms[members[0]] if len(members) == 1 else lonlat.fix_geometry(shapely.union_all(geoms[members]))
        pixels = int(part["pixels"].sum())
        area = float(part["area_m2"].iloc[0]) if len(members) == 1 else lonlat.geometry_area_km2(geom) * 1e6
        # the filters and simplification the scenes left to the merge
        if pixels < float(part["min_px"].max()) or area < min_area_m2:
            continue
        if simplify_m > 0:
            geom = simplify_lonlat(geom, simplify_m)
            area = lonlat.geometry_area_km2(geom) * 1e6
        out.append({"geometry": geom, "area_m2": area, "pixels": pixels,
                    "max_probability": float(part["max_probability"].max()),
                    "mean_probability": float((part["mean_probability"] * part["pixels"]).sum() / max(pixels, 1)),
                    "scenes": ",".join(sorted(set(part["scene"])))})
    yield out


def _touching_pairs(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of lon/lat geometries that touch or overlap, across 180° too: parts that reach -180° are
    also tested shifted by +360°, so a part ending at 180° meets its continuation beyond it."""
    wraps = np.flatnonzero(shapely.bounds(geoms)[:, 0] <= -180.0 + 1e-9)
    shifted = shapely.transform(geoms[wraps], lambda xy: xy + np.array([360.0, 0.0]))
    owner = np.concatenate([np.arange(len(geoms)), wraps])
    left, right = shapely.STRtree(np.concatenate([geoms, shifted])).query(geoms, predicate="intersects")
    return left, owner[right]


class FootprintWriter:
    """Writes merged footprints as they come into ``footprints.parquet`` (GeoParquet 1.0, OGC:CRS84, one row
    group per batch) and ``footprints.geojson`` (RFC 7946) in ``output``, through local temporary files that
    are moved (or streamed up to remote storage) only when :meth:`close` finishes both: memory holds one batch,
    and an interrupted merge leaves no half-written inventory. Each footprint gets ``footprint_id`` (0, 1, ...
    in the order written) and the model's name and version."""

    def __init__(self, output: str, name: str, model: dict):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.output, self.props = output, {"model_name": model["name"], "model_version": model["version"]}
        self.count, self.area_m2 = 0, 0.0
        self.workdir = tempfile.mkdtemp(prefix="landslide-footprints-")
        self.schema = pa.schema([("footprint_id", pa.int64()), ("area_m2", pa.float64()), ("pixels", pa.int64()),
                                 ("mean_probability", pa.float64()), ("max_probability", pa.float64()),
                                 ("scenes", pa.string()), ("model_name", pa.string()),
                                 ("model_version", pa.string())])
        self._parquet = pq.ParquetWriter(os.path.join(self.workdir, "footprints.parquet"),
                                         geo.geoparquet_schema(self.schema))
        self._geojson = open(os.path.join(self.workdir, "footprints.geojson"), "w", encoding="utf-8")
        head = json.dumps(geo.feature_collection([], name=name))
        self._geojson.write(head[:head.rindex("[") + 1])  # '{"type": ..., "name": ..., "features": ['

    def write(self, footprints: list[dict]) -> None:
        import pyarrow as pa

        if not footprints:
            return
        ids = range(self.count, self.count + len(footprints))
        rows = [{"footprint_id": k, **{c: f[c] for c in FOOTPRINT_COLUMNS}, **self.props}
                for k, f in zip(ids, footprints)]
        table = pa.Table.from_pylist(rows, self.schema)
        geoms = [f["geometry"] for f in footprints]
        self._parquet.write_table(table.append_column("geometry", pa.array(shapely.to_wkb(geoms), pa.binary())))
        for row, geom in zip(rows, geoms):
            self._geojson.write(("," if row["footprint_id"] else "")
                                + json.dumps(geo.feature(geom, row), separators=(",", ":")))
        self.count += len(rows)
        self.area_m2 += float(sum(f["area_m2"] for f in footprints))

    def close(self) -> None:
        """Finish both files and put them in place (each whole or not at all)."""
        self._parquet.close()
        self._geojson.write("]}")
        self._geojson.close()
        for name in ("footprints.parquet", "footprints.geojson"):
            storage.put_file(os.path.join(self.workdir, name), storage.join(self.output, name))
        shutil.rmtree(self.workdir, ignore_errors=True)

    def abort(self) -> None:
        """Drop the temporary files (after an error)."""
        for handle in (self._parquet, self._geojson):
            try:
                handle.close()
            except Exception:  # already closed or broken: nothing to keep
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def _scene_frames(cfg: SweepConfig, records: list[dict]) -> Iterator[pd.DataFrame]:
    for r in records:
        table = storage.read_bytes(storage.join(cfg.output, "scenes", f"{r['scene']}.footprints.parquet"))
        yield pd.read_parquet(io.BytesIO(table))


@dataclass(frozen=True)
class SceneJob:
    """One unit of a footprint sweep: a GeoTIFF/COG scene (``uri``) or a group of tiles mosaicked into one
    (``group``, :mod:`landslide.inventory.tile_mosaic`); ``key`` names its files in ``OUTPUT/scenes/``."""

    key: str
    uri: str = ""
    group: TileGroup | None = None

    def to_item(self) -> dict:
        """The job as plain strings and numbers (a Ray Data row)."""
        g = self.group
        return {"key": self.key, "uri": self.uri, "crs": g.crs if g else "", "zoom": -1 if g is None or g.zoom is None
                else g.zoom, "tiles": g.tiles.to_json(orient="records") if g else ""}

    @classmethod
    def from_item(cls, item: dict) -> "SceneJob":
        if not item["tiles"]:
            return cls(str(item["key"]), uri=str(item["uri"]))
        zoom = int(item["zoom"])
        group = TileGroup(str(item["key"]), pd.read_json(io.StringIO(str(item["tiles"])), orient="records",
                                                          dtype={"tile_id": str, "uri": str}),
                          str(item["crs"]), None if zoom < 0 else zoom)
        return cls(str(item["key"]), group=group)


@dataclass
class FootprintPlan:
    """What a footprint sweep will do: its jobs (pruned to the region), the settings each finished job must
    record to be kept on resume, the region and the model."""

    jobs: list[SceneJob]
    settings: dict
    region: Region
    model: dict
    source_format: str


def plan_footprint_sweep(cfg: SweepConfig, predictor: FootprintPredictor) -> FootprintPlan:
    """The jobs of a footprint sweep: every GeoTIFF/COG scene of ``cfg.tiles.source`` that meets the region, or
    the region's tiles of an XYZ/TMS tree grouped into metatiles (``footprints.metatile``), or each tile of a
    tile manifest / GeoJSON index. DataError when nothing of the source meets the region."""
    from landslide.inventory.tiles import build_index, detect_format

    if cfg.tiles.index:
        raise ConfigError(f"tiles.index: footprint sweeps read {cfg.tiles.source} themselves (scenes whole, tiles "
                          "grouped into scenes); drop tiles.index")
    if cfg.tiles.overlap:
        raise ConfigError("tiles.overlap: footprint sweeps overlap their windows by footprints.overlap; set that "
                          "instead")
    region = load_region(cfg.region)
    storage.check_writable(cfg.output)
    fmt = detect_format(cfg.tiles.source) if cfg.tiles.format == "auto" else cfg.tiles.format
    if fmt == "geotiff":
        scenes = list_scenes(cfg.tiles.source, exclude=cfg.output)
        if region.geometry is not None:
            scenes = [s for s in scenes if _meets(region, s)]
        jobs = [SceneJob(scene_key(cfg.tiles.source, uri), uri=uri) for uri in scenes]
    else:
        if cfg.tiles.window_m or cfg.tiles.match_gsd or cfg.tiles.bands:
            raise ConfigError(f"tiles.window_m, match_gsd and bands apply to GeoTIFF scenes; {cfg.tiles.source} "
                              f"is a {fmt} source (its windows follow the model's GSD where tiles record one)")
        index = region.select(build_index(cfg.tiles.source, fmt, cfg.tiles.zoom, bbox=region.boxes,
                                          scheme=cfg.tiles.scheme)).reset_index(drop=True)
        if index.empty:
            raise DataError(f"no tiles of {cfg.tiles.source} intersect the region ({region.description})")
        groups = metatiles(index, cfg.footprints.metatile) if fmt == "xyz" else listed_tiles(index)
        jobs = [SceneJob(g.key, group=g) for g in groups]
    if not jobs:
        raise DataError(f"no scene of {cfg.tiles.source} meets the region ({region.description})")
    settings = sweep_settings(cfg, predictor, fmt)
    _check_output(cfg, {"source": cfg.tiles.source, "format": fmt, "zoom": cfg.tiles.zoom,
                        "scheme": cfg.tiles.scheme, "settings": settings})
    return FootprintPlan(jobs, settings, region, predictor.info, fmt)


def _check_output(cfg: SweepConfig, record: dict) -> None:
    """``OUTPUT/footprint_sweep.json`` records the source and settings of the footprint sweep in ``output``; a
    later run with others (another source, model, threshold, metatile size ...) is refused rather than mixing
    two sweeps' scenes in one folder."""
    uri = storage.join(cfg.output, "footprint_sweep.json")
    if storage.exists(uri):
        try:
            previous = storage.read_json(uri)
        except (StorageError, ValueError):
            previous = None
        same = previous is not None and same_source(str(previous.get("source")), record["source"]) and all(
            previous.get(k) == v for k, v in record.items() if k != "source")
        if previous is not None and not same:
            raise ConfigError(f"{cfg.output} holds a footprint sweep with other settings ({previous}; now {record}): "
                              "sweep into another output, or delete it to start again")
    storage.write_json(uri, record)


def sweep_job(predictor: FootprintPredictor, job: SceneJob, cfg: SweepConfig, settings: dict) -> dict:
    """Sweep one job (:func:`sweep_scene`; a tile group is first mosaicked into a temporary local GeoTIFF,
    removed afterwards). Returns its record; a tile group none of whose tiles could be read is recorded with
    its reasons and no footprints. A scene that cannot be swept (unreadable, no CRS, storage failing) gives
    ``{scene, error}`` and writes nothing, so the next run tries it again; the others go on."""
    try:
        return _sweep_job(predictor, job, cfg, settings)
    except LandslideError as exc:
        log.warning("scene %s: %s", job.key, exc)
        return {"scene": job.key, "uri": job.uri or cfg.tiles.source, "error": str(exc), "footprints": 0}


def _sweep_job(predictor: FootprintPredictor, job: SceneJob, cfg: SweepConfig, settings: dict) -> dict:
    if job.group is None:
        return sweep_scene(predictor, job.uri, cfg, job.key, settings)
    workdir = tempfile.mkdtemp(prefix="landslide-tiles-")
    try:
        path = os.path.join(workdir, f"{job.key}.tif")
        mosaic = write_mosaic(job.group, path, cfg.read_threads, cfg.max_image_pixels, cfg.max_tile_bytes)
        source = {"tiles": mosaic["tiles"], "tiles_unreadable": mosaic["unreadable"], "tile_crs": job.group.crs,
                  "first_tile": str(job.group.tiles["tile_id"].iloc[0]), "tiles_fingerprint": fingerprint(job.group)}
        if not mosaic["width"]:
            record = {"scene": job.key, "uri": cfg.tiles.source, "footprints": 0, "windows": 0,
                      "windows_nodata": 0, "settings": settings, **source}
            storage.write_bytes(storage.join(cfg.output, "scenes", f"{job.key}.footprints.parquet"),
                                _with_metadata(_empty_parquet(_scene_frame([], job.key, 0.0)), record))
            return record
        return sweep_scene(predictor, path, cfg, job.key, settings, extra={"uri": cfg.tiles.source, **source})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def finish_footprint_sweep(cfg: SweepConfig, plan: FootprintPlan, records: list[dict], swept: int,
                           started: float) -> dict:
    """Merge the finished jobs' footprints across their borders into ``footprints.parquet`` /
    ``footprints.geojson`` (streamed, :func:`merge_scenes` and :class:`FootprintWriter`) and write
    ``summary.json``; returns the summary."""
    info = plan.model
    failed = [{"scene": r["scene"], "error": r["error"]} for r in records if "error" in r]
    records = [r for r in records if "error" not in r]
    if failed and not records:
        raise DataError(f"no scene of {cfg.tiles.source} could be swept ({len(failed)} failed); the first: "
                        f"{failed[0]['error']}")
    tiles = sum(r.get("tiles", 0) for r in records)
    bad = [t for r in records for t in r.get("tiles_unreadable", [])]
    if plan.source_format != "geotiff" and tiles and len(bad) == tiles and not failed:
        raise DataError(f"none of the {tiles} tiles of {cfg.tiles.source} in the region could be read; the first: "
                        f"{bad[0]['tile_id']}: {bad[0]['reason']}")
    writer = FootprintWriter(cfg.output, f"{cfg.name} ({info['name']} {info['version']})", info)
    try:
        for batch in merge_scenes(_scene_frames(cfg, records), cfg.footprints.min_area_m2,
                                  cfg.footprints.simplify_m):
            writer.write(batch)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    unreadable = len(bad)
    summary = {"name": cfg.name, "kind": "footprints", "model": info, "region": plan.region.description,
               "source_format": plan.source_format, "scenes": len(plan.jobs), "scenes_swept_this_run": swept,
               "footprints": writer.count, "area_m2": writer.area_m2, "seconds": time.perf_counter() - started,
               "files": {"footprints": "footprints.parquet", "geojson": "footprints.geojson", "scenes": "scenes/"}}
    if plan.source_format != "geotiff":
        summary["tiles"] = int(tiles)
        summary["tiles_unreadable"] = unreadable
    summary["scenes_failed"] = failed
    summary["per_scene"] = records
    storage.write_json(storage.join(cfg.output, "summary.json"), summary)
    return summary


def scene_state(record: dict) -> str:
    """A swept job in a few words, for progress lines: its footprints, or why it failed."""
    return f"FAILED: {record['error']}" if "error" in record else f"{record['footprints']} footprints"


def finished_record(cfg: SweepConfig, job: SceneJob, settings: dict) -> dict | None:
    """The record of a job finished by an earlier run with the same settings (None: sweep it: also a tile group
    that now holds other tiles, e.g. after the region grew); ConfigError when its files were written with
    other settings."""
    record = _done(storage.join(cfg.output, "scenes", f"{job.key}.footprints.parquet"), settings)
    if record is not None and job.group is not None and record.get("tiles_fingerprint") != fingerprint(job.group):
        return None
    return record


def run_footprint_sweep(cfg: SweepConfig, progress=None, stop_after_scenes: int | None = None) -> dict:
    """Sweep every scene (or tile group) of ``cfg.tiles.source`` that meets the region with the footprint model
    ``cfg.model``; re-running resumes (finished ones are kept). ``stop_after_scenes`` (tests) stops early as an
    interruption would. Returns the summary (also ``summary.json``)."""
    started = time.perf_counter()
    predictor = FootprintPredictor(cfg.model, cfg.device, cfg.threshold)
    plan = plan_footprint_sweep(cfg, predictor)
    records, swept = [], 0
    for i, job in enumerate(plan.jobs):
        record = finished_record(cfg, job, plan.settings)
        if record is not None:
            records.append(record)
            continue
        if stop_after_scenes is not None and swept >= stop_after_scenes:
            return {"interrupted": True, "scenes_done": len(records), "scenes": len(plan.jobs)}
        records.append(sweep_job(predictor, job, cfg, plan.settings))
        swept += 1
        if progress:
            progress(f"scene {i + 1}/{len(plan.jobs)} {job.key}: {scene_state(records[-1])}")
    return finish_footprint_sweep(cfg, plan, records, swept, started)
