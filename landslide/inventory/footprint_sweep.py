"""Footprint sweeps: a footprint model over every GeoTIFF/COG scene of a region -> a polygon inventory.

``landslide sweep`` runs this when its ``model`` is a footprint model (card ``task: segmentation``). Per scene
(:mod:`landslide.inventory.scene_footprints`; ``NAME``: its path below the source, folders joined by ``__``):
overlapping windows at the model's training scale, stitched into ``scenes/NAME.footprint_probability.tif`` (a Cloud-Optimized GeoTIFF aligned with the scene), traced block row by
block row into footprints, the card's minimum footprint size applied (scaled to scene pixels), simplified and
measured (``sweep.footprints``), written to ``scenes/NAME.footprints.parquet`` (GeoParquet in the scene's CRS).
A scene is the unit of resumption: one whose footprints file records the same settings (model version,
thresholds, window, bands, ``footprints``) is not swept again; other settings in the same output are refused.
Then every scene's footprints are merged where they touch across scene borders, in lon/lat, into
``footprints.parquet`` (GeoParquet, EPSG:4326) and ``footprints.geojson`` (RFC 7946, cut at 180°), each with
``area_m2`` (geodesic, WGS84), mean and max probability, pixels, scenes, model name and version; and
``summary.json``.

Not yet: XYZ/TMS tile trees and tile manifests (footprints need georeferenced scenes here), Ray Data.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time

import numpy as np
import pandas as pd
import shapely
import shapely.affinity

from landslide import lonlat, storage
from landslide.config import SweepConfig
from landslide.errors import ConfigError, DataError
from landslide.inference.footprints import FootprintPredictor
from landslide.inventory import geo
from landslide.inventory.footprints import measure, simplify_lonlat, touching_groups
from landslide.inventory.maps import _geoparquet_bytes
from landslide.inventory.region import load_region
from landslide.inventory.scene_footprints import stitch_scene, trace_raster
from landslide.inventory.tiles import GEOTIFF_SUFFIXES, open_raster

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
        raise ConfigError(f"tiles.source {source}: footprint sweeps read GeoTIFF/COG scenes (a .tif or a folder of "
                          "them); XYZ trees and tile manifests are not supported for footprint models yet")
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


def sweep_settings(cfg: SweepConfig, predictor: FootprintPredictor) -> dict:
    """What a scene's footprints depend on besides the scene: recorded with each scene, checked on resume."""
    return {"model_version": predictor.info["version"], "threshold": predictor.threshold,
            "min_object_px": predictor.min_object_px, "chip_size": cfg.tiles.chip_size,
            "bands": cfg.tiles.bands, "footprints": cfg.footprints.model_dump(exclude={"block"})}


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


def sweep_scene(predictor: FootprintPredictor, uri: str, cfg: SweepConfig, key: str, settings: dict) -> dict:
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
                            cfg.tiles.bands, block=fp.block, workdir=None)
    scale = (stitched["window_px"] / predictor.input_size) ** 2  # input pixels -> scene pixels
    min_px = predictor.min_object_px * scale
    outline = shapely.affinity.affine_transform(
        shapely.box(0, 0, width, height).boundary,
        [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f])
    half_pixel = 0.5 * min(abs(transform.a), abs(transform.e))
    traced = trace_raster(raster, predictor.threshold, fp.block)
    edge = [f for f in traced if f["geometry"].distance(outline) < half_pixel]
    inner = [f for f in traced if f["geometry"].distance(outline) >= half_pixel and f["pixels"] >= min_px]
    measured = ([{**f, "edge": False} for f in measure(inner, crs, fp.min_area_m2, fp.simplify_m)]
                + [{**f, "edge": True} for f in measure(edge, crs)])
    frame = pd.DataFrame([{"scene": key, "area_m2": f["area_m2"], "pixels": f["pixels"],
                           "mean_probability": f["mean_probability"], "max_probability": f["max_probability"],
                           "edge": f["edge"], "min_px": float(min_px),
                           "wgs84_wkb": shapely.to_wkb(f["geometry_wgs84"])} for f in measured],
                         columns=["scene", "area_m2", "pixels", "mean_probability", "max_probability", "edge",
                                  "min_px", "wgs84_wkb"])
    record = {"scene": key, "uri": uri, "footprints": len(frame), "probability_raster": raster,
              "windows": stitched["windows"], "windows_nodata": stitched["windows_nodata"],
              "window_px": stitched["window_px"], "window_reason": stitched["reason"],
              "min_footprint_px": math.ceil(min_px), "crs": stitched["crs"], "settings": settings}
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


def merge_scenes(frames: list[pd.DataFrame], min_area_m2: float = 0.0, simplify_m: float = 0.0) -> list[dict]:
    """Footprints of all scenes, merged where they touch or overlap across scene borders (in lon/lat): one dict
    per footprint with ``geometry`` (lon/lat, cut at 180°), ``area_m2`` (geodesic), ``pixels`` (summed over the
    scenes' parts), pixel-weighted ``mean_probability``, ``max_probability`` and the ``scenes`` it spans. Parts
    kept exact at scene edges (``edge``) are filtered (minimum size in pixels, ``min_area_m2``) and simplified
    (``simplify_m`` metres) only now, whole."""
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        return []
    geoms = shapely.from_wkb(rows["wgs84_wkb"].to_numpy())
    scenes = rows["scene"].to_numpy()
    edge = rows["edge"].to_numpy(bool) if "edge" in rows else np.zeros(len(rows), bool)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    join = (scenes[left] != scenes[right]) & edge[left] & edge[right]  # only edge parts can continue elsewhere
    out = []
    for members in touching_groups(len(rows), left[join], right[join]):
        part = rows.iloc[members]
        geom = geoms[members[0]] if len(members) == 1 else lonlat.fix_geometry(shapely.union_all(geoms[members]))
        pixels = int(part["pixels"].sum())
        area = float(part["area_m2"].iloc[0]) if len(members) == 1 else lonlat.geometry_area_km2(geom) * 1e6
        if edge[members].any():  # the filters and simplification the scene left to the merge
            if pixels < float(part["min_px"].max()) or area < min_area_m2:
                continue
            if simplify_m > 0:
                geom = simplify_lonlat(geom, simplify_m)
                area = lonlat.geometry_area_km2(geom) * 1e6
        out.append({"geometry": geom, "area_m2": area, "pixels": pixels,
                    "max_probability": float(part["max_probability"].max()),
                    "mean_probability": float((part["mean_probability"] * part["pixels"]).sum() / max(pixels, 1)),
                    "scenes": ",".join(sorted(set(part["scene"])))})
    out.sort(key=lambda f: -f["area_m2"])
    return out


def run_footprint_sweep(cfg: SweepConfig, progress=None, stop_after_scenes: int | None = None) -> dict:
    """Sweep every scene of ``cfg.tiles.source`` that meets the region with the footprint model ``cfg.model``;
    re-running resumes (finished scenes are kept). ``stop_after_scenes`` (tests) stops early as an interruption
    would. Returns the summary (also ``summary.json``)."""
    started = time.perf_counter()
    predictor = FootprintPredictor(cfg.model, cfg.device, cfg.threshold)
    info = predictor.info
    region = load_region(cfg.region)
    scenes = list_scenes(cfg.tiles.source, exclude=cfg.output)
    if region.geometry is not None:
        scenes = [s for s in scenes if shapely.area(shapely.intersection(region.geometry, _scene_lonlat_box(s))) > 0]
    storage.check_writable(cfg.output)
    settings = sweep_settings(cfg, predictor)
    records, swept = [], 0
    for i, uri in enumerate(scenes):
        key = scene_key(cfg.tiles.source, uri)
        record = _done(storage.join(cfg.output, "scenes", f"{key}.footprints.parquet"), settings)
        if record is not None:
            records.append(record)
            continue
        if stop_after_scenes is not None and swept >= stop_after_scenes:
            return {"interrupted": True, "scenes_done": len(records), "scenes": len(scenes)}
        records.append(sweep_scene(predictor, uri, cfg, key, settings))
        swept += 1
        if progress:
            progress(f"scene {i + 1}/{len(scenes)} {key}: {records[-1]['footprints']} footprints")
    frames = []
    for r in records:
        table = storage.read_bytes(storage.join(cfg.output, "scenes", f"{r['scene']}.footprints.parquet"))
        frames.append(pd.read_parquet(io.BytesIO(table)))
    merged = merge_scenes(frames, cfg.footprints.min_area_m2, cfg.footprints.simplify_m)
    name = f"{cfg.name} ({info['name']} {info['version']})"
    props = {"model_name": info["name"], "model_version": info["version"]}
    features = [geo.feature(f["geometry"], {"footprint_id": k, **{c: f[c] for c in ("area_m2", "pixels",
                                            "mean_probability", "max_probability", "scenes")}, **props})
                for k, f in enumerate(merged)]
    storage.write_json(storage.join(cfg.output, "footprints.geojson"), geo.feature_collection(features, name=name))
    table = pd.DataFrame([{"footprint_id": k, **{c: f[c] for c in ("area_m2", "pixels", "mean_probability",
                                                                 "max_probability", "scenes")}, **props}
                          for k, f in enumerate(merged)],
                         columns=["footprint_id", "area_m2", "pixels", "mean_probability", "max_probability",
                                  "scenes", "model_name", "model_version"])
    from pyproj import CRS

    wgs84 = CRS.from_epsg(4326)
    storage.write_bytes(storage.join(cfg.output, "footprints.parquet"),
                        _geoparquet_bytes(table, [f["geometry"] for f in merged], wgs84) if merged
                        else _empty_parquet(table))
    summary = {"name": cfg.name, "kind": "footprints", "model": info, "region": region.description,
               "scenes": len(scenes), "scenes_swept_this_run": swept, "footprints": len(merged),
               "area_m2": float(sum(f["area_m2"] for f in merged)), "seconds": time.perf_counter() - started,
               "per_scene": records, "files": {"footprints": "footprints.parquet", "geojson": "footprints.geojson",
                                               "scenes": "scenes/"}}
    storage.write_json(storage.join(cfg.output, "summary.json"), summary)
    return summary
