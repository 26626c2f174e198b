"""Footprint sweeps: a footprint model over every GeoTIFF/COG scene of a region -> a polygon inventory.

``landslide sweep`` runs this when its ``model`` is a footprint model (card ``task: segmentation``). Per scene
(:mod:`landslide.inventory.scene_footprints`): overlapping windows at the model's training scale, stitched into
``scenes/NAME.footprint_probability.tif`` (a Cloud-Optimized GeoTIFF aligned with the scene), traced block row by
block row into footprints, the card's minimum footprint size applied (scaled to scene pixels), simplified and
measured (``sweep.footprints``), written to ``scenes/NAME.footprints.parquet`` (GeoParquet in the scene's CRS).
A scene is the unit of resumption: one whose footprints file records the same model version is not swept again.
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
import time

import pandas as pd
import shapely

from landslide import lonlat, storage
from landslide.config import SweepConfig
from landslide.errors import ConfigError, DataError
from landslide.inference.footprints import FootprintPredictor
from landslide.inventory import geo
from landslide.inventory.footprints import measure
from landslide.inventory.maps import _geoparquet_bytes, scene_name
from landslide.inventory.region import load_region
from landslide.inventory.scene_footprints import stitch_scene, trace_raster
from landslide.inventory.tiles import GEOTIFF_SUFFIXES, open_raster

log = logging.getLogger(__name__)


def list_scenes(source: str) -> list[str]:
    """The GeoTIFF/COG scenes of ``source`` (one file, or every .tif/.tiff below a folder); DataError when
    there are none or the source is of another kind."""
    if source.lower().endswith(GEOTIFF_SUFFIXES):
        if not storage.exists(source):
            raise DataError(f"{source}: not found")
        return [source]
    if not storage.isdir(source):
        raise ConfigError(f"tiles.source {source}: footprint sweeps read GeoTIFF/COG scenes (a .tif or a folder of "
                          "them); XYZ trees and tile manifests are not supported for footprint models yet")
    scenes = storage.list_files(source, GEOTIFF_SUFFIXES)
    if not scenes:
        raise DataError(f"{source}: no GeoTIFF (.tif/.tiff) files")
    return scenes


def _scene_lonlat_box(uri: str) -> shapely.Geometry:
    from rasterio.warp import transform_bounds

    with open_raster(uri) as ds:
        if ds.crs is None:
            raise DataError(f"{uri}: the scene has no CRS; footprints need georeferenced scenes")
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    return lonlat.footprints([west], [south], [east], [north])[0]


def _done(path: str, version: str) -> bool:
    """Whether a scene's footprints file exists and was written by this model version."""
    if not storage.exists(path):
        return False
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(io.BytesIO(storage.read_bytes(path))).metadata or {}
    except Exception:  # a damaged file is swept again
        return False
    return json.loads(meta.get(b"landslide", b"{}")).get("model_version") == version


def sweep_scene(predictor: FootprintPredictor, uri: str, cfg: SweepConfig) -> dict:
    """One scene: stitched probabilities, footprints in its CRS (``scenes/NAME.footprints.parquet``, the last
    file written, so its presence means the scene is done). Returns the scene's record for the summary."""
    name = scene_name(uri)
    with open_raster(uri) as ds:
        if ds.crs is None:
            raise DataError(f"{uri}: the scene has no CRS; footprints need georeferenced scenes")
    raster = storage.join(cfg.output, "scenes", f"{name}.footprint_probability.tif")
    fp = cfg.footprints
    stitched = stitch_scene(predictor, uri, raster, cfg.tiles.chip_size, fp.overlap, cfg.batch_size,
                            cfg.tiles.bands, block=fp.block)
    scale = (stitched["window_px"] / predictor.input_size) ** 2  # input pixels -> scene pixels
    min_px = predictor.min_object_px * scale
    found = [f for f in trace_raster(raster, predictor.threshold, fp.block) if f["pixels"] >= min_px]
    with open_raster(uri) as ds:
        crs = ds.crs
    measured = measure(found, crs, fp.min_area_m2, fp.simplify_m)
    info = predictor.info
    frame = pd.DataFrame([{"scene": name, "area_m2": f["area_m2"], "pixels": f["pixels"],
                           "mean_probability": f["mean_probability"], "max_probability": f["max_probability"],
                           "wgs84_wkb": shapely.to_wkb(f["geometry_wgs84"])} for f in measured],
                         columns=["scene", "area_m2", "pixels", "mean_probability", "max_probability", "wgs84_wkb"])
    record = {"scene": name, "uri": uri, "footprints": len(frame), "probability_raster": raster,
              "windows": stitched["windows"], "windows_nodata": stitched["windows_nodata"],
              "window_px": stitched["window_px"], "window_reason": stitched["reason"],
              "min_footprint_px": math.ceil(min_px), "crs": stitched["crs"], "model_version": info["version"]}
    data = _geoparquet_bytes(frame, [f["geometry"] for f in measured], crs) if measured else \
        _empty_parquet(frame)
    data = _with_metadata(data, record)
    storage.write_bytes(storage.join(cfg.output, "scenes", f"{name}.footprints.parquet"), data)
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


def merge_scenes(frames: list[pd.DataFrame]) -> list[dict]:
    """Footprints of all scenes, merged where they touch or overlap across scene borders (in lon/lat): one dict
    per footprint with ``geometry`` (lon/lat, cut at 180°), ``area_m2`` (geodesic), ``pixels``, pixel-weighted
    ``mean_probability``, ``max_probability`` and the ``scenes`` it spans."""
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        return []
    geoms = shapely.from_wkb(rows["wgs84_wkb"].to_numpy())
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    scenes = rows["scene"].to_numpy()
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    for i, j in zip(left, right):
        if i < j and scenes[i] != scenes[j]:  # within a scene, footprints were already traced apart
            parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        part = rows.iloc[members]
        geom = geoms[members[0]] if len(members) == 1 else lonlat.fix_geometry(shapely.union_all(geoms[members]))
        pixels = int(part["pixels"].sum())
        out.append({"geometry": geom,
                    "area_m2": float(part["area_m2"].iloc[0]) if len(members) == 1 else
                    lonlat.geometry_area_km2(geom) * 1e6,
                    "pixels": pixels, "max_probability": float(part["max_probability"].max()),
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
    scenes = list_scenes(cfg.tiles.source)
    if region.geometry is not None:
        scenes = [s for s in scenes if shapely.area(shapely.intersection(region.geometry, _scene_lonlat_box(s))) > 0]
    storage.check_writable(cfg.output)
    records, swept = [], 0
    for i, uri in enumerate(scenes):
        path = storage.join(cfg.output, "scenes", f"{scene_name(uri)}.footprints.parquet")
        if _done(path, info["version"]):
            import pyarrow.parquet as pq

            meta = pq.read_schema(io.BytesIO(storage.read_bytes(path))).metadata
            records.append(json.loads(meta[b"landslide"]))
            continue
        if stop_after_scenes is not None and swept >= stop_after_scenes:
            return {"interrupted": True, "scenes_done": len(records), "scenes": len(scenes)}
        records.append(sweep_scene(predictor, uri, cfg))
        swept += 1
        if progress:
            progress(f"scene {i + 1}/{len(scenes)} {scene_name(uri)}: {records[-1]['footprints']} footprints")
    frames = []
    for r in records:
        table = storage.read_bytes(storage.join(cfg.output, "scenes", f"{r['scene']}.footprints.parquet"))
        frames.append(pd.read_parquet(io.BytesIO(table)))
    merged = merge_scenes(frames)
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
