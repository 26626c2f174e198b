"""What a GIS user expects beside a sweep's vector inventory: per-scene rasters and areas in the scene's own
CRS, georeferenced Grad-CAM overlays, and a map preview PNG.

- :class:`SceneMaps` collects the scored GeoTIFF windows while :func:`~landslide.inventory.sweep.finalize`
  streams the shards (five numbers per window), then writes per scene

  - ``scenes/NAME.probability.tif``: a Cloud-Optimized GeoTIFF aligned with the scene (same CRS, its pixel
    grid coarsened by a whole factor: the greatest common divisor of the window size and offsets, so every
    window covers whole cells). A cell holds the mean probability of the scored windows that cover it
    (overlapping windows blended), nodata (-1) where no window was scored.
  - ``scenes/NAME.areas.parquet``: the positive windows dissolved in the scene's CRS (GeoParquet with the
    CRS as PROJJSON), clipped to the scene, each with ``area_m2`` (planar in a projected CRS, the exact area
    of the pixels flagged; geodesic for a geographic one).
- :func:`cam_geotiff` georeferences a Grad-CAM overlay: the window's own transform for scene windows,
  EPSG:3857 for XYZ/TMS tiles, the lon/lat footprint otherwise.
- :func:`preview_png`: the swept windows coloured by probability (where windows overlap, the highest on
  top), unscored ones grey, the dissolved areas
  outlined, the region dashed; lon/lat with the aspect of the map's middle latitude (continuous across 180°).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from landslide import lonlat, storage

PROBABILITY_NODATA = -1.0
"""Nodata of the probability rasters: cells no scored window covers."""


def scene_name(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


@dataclass
class _Scene:
    cols: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    probs: list = field(default_factory=list)


class SceneMaps:
    """Collects scored GeoTIFF windows (``window`` not empty, status ``ok``) shard by shard, per scene URI;
    :func:`write_scene` writes each scene's probability raster and areas."""

    def __init__(self) -> None:
        self.scenes: dict[str, _Scene] = {}

    def add(self, frame: pd.DataFrame) -> None:
        """Take the scored windows of one shard (rows with :data:`~landslide.inventory.sweep.RESULT_SCHEMA`)."""
        scored = frame[(frame["status"] == "ok") & (frame["window"] != "")]
        for uri, part in scored.groupby("uri", sort=False):
            win = part["window"].str.split(",", expand=True).astype(np.int64).to_numpy()
            scene = self.scenes.setdefault(str(uri), _Scene())
            scene.cols.append(win[:, 0])
            scene.rows.append(win[:, 1])
            scene.sizes.append(win[:, 2:4])
            scene.probs.append(part["probability"].to_numpy(float))


def write_scene(out: str, uri: str, scene: _Scene, threshold: float) -> dict:
    """Write one scene's probability raster and areas under ``out/scenes/``; returns what was written (CRS,
    cell size in scene pixels, relative paths, swept and positive areas in m² in the scene's CRS)."""
    from rasterio.transform import Affine

    from landslide.inventory.tiles import open_raster

    cols, rows = np.concatenate(scene.cols), np.concatenate(scene.rows)
    sizes, probs = np.concatenate(scene.sizes), np.concatenate(scene.probs)
    with open_raster(uri) as ds:
        crs, transform, width, height = ds.crs, ds.transform, ds.width, ds.height
    cell = int(np.gcd.reduce(np.concatenate([cols, rows, sizes.ravel()])))
    cell = max(cell, 1)
    grid_h, grid_w = math.ceil(height / cell), math.ceil(width / cell)
    total = np.zeros((grid_h, grid_w))
    count = np.zeros((grid_h, grid_w), np.int32)
    for c, r, (w, h), p in zip(cols // cell, rows // cell, sizes // cell, probs):
        total[r:r + h, c:c + w] += p
        count[r:r + h, c:c + w] += 1
    mean = np.where(count > 0, total / np.maximum(count, 1), PROBABILITY_NODATA).astype(np.float32)
    name = scene_name(uri)
    raster_rel = f"scenes/{name}.probability.tif"
    storage.write_bytes(storage.join(out, raster_rel),
                        _cog_bytes(mean, crs, transform * Affine.scale(cell), PROBABILITY_NODATA))

    # areas in the scene's CRS: pixel boxes clipped to the scene, unioned, mapped through its transform
    scene_box = shapely.box(0, 0, width, height)
    boxes = shapely.intersection(shapely.box(cols, rows, cols + sizes[:, 0], rows + sizes[:, 1]), scene_box)
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    to_crs = lambda g: shapely.affinity.affine_transform(g, matrix)  # noqa: E731
    positive = probs >= threshold
    swept_m2 = _area_m2(to_crs(shapely.union_all(boxes)), crs)
    result = {"crs": crs.to_string(), "cell_px": cell, "probability_raster": raster_rel,
              "area_m2_swept": round(swept_m2, 3), "area_m2_positive": 0.0, "areas": None}
    if positive.any():
        merged = shapely.union_all(boxes[positive])
        parts = sorted(getattr(merged, "geoms", [merged]), key=lambda g: (g.bounds[1], g.bounds[0]))
        tree = shapely.STRtree(boxes)
        records, geoms = [], []
        for i, part in enumerate(parts):
            members = [m for m in tree.query(part, predicate="intersects")
                       if positive[m] and shapely.area(shapely.intersection(boxes[m], part)) > 0]
            geom = to_crs(part)
            geoms.append(geom)
            records.append({"area_id": i, "tiles": len(members), "area_m2": _area_m2(geom, crs),
                            "max_probability": float(probs[members].max()),
                            "mean_probability": float(probs[members].mean())})
        areas_rel = f"scenes/{name}.areas.parquet"
        storage.write_bytes(storage.join(out, areas_rel), _geoparquet_bytes(pd.DataFrame(records), geoms, crs))
        result.update(areas=areas_rel, area_m2_positive=round(sum(r["area_m2"] for r in records), 3))
    return result


def _area_m2(geom, crs) -> float:
    """Area of a geometry in ``crs`` coordinates, m²: planar for a projected CRS (its linear unit converted to
    metres), geodesic on WGS84 for a geographic one (x = longitude, y = latitude)."""
    if geom is None or geom.is_empty:
        return 0.0
    if crs.is_projected:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        return float(geom.area) * factor ** 2
    return lonlat.geometry_area_km2(lonlat.fix_geometry(geom)) * 1e6


def _cog_bytes(data: np.ndarray, crs, transform, nodata: float) -> bytes:
    """A single-band float32 Cloud-Optimized GeoTIFF (GDAL's COG driver, deflate) as bytes."""
    from rasterio.io import MemoryFile

    height, width = data.shape
    with MemoryFile() as mem:
        with mem.open(driver="COG", width=width, height=height, count=1, dtype="float32", crs=crs,
                      transform=transform, nodata=nodata, compress="DEFLATE") as dst:
            dst.write(data, 1)
            dst.set_band_description(1, "landslide probability (mean of the scored windows over each cell)")
        return mem.read()


def _geoparquet_bytes(frame: pd.DataFrame, geoms: list, crs) -> bytes:
    """GeoParquet 1.0 with the geometries in ``crs`` (PROJJSON in the ``geo`` metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import CRS

    meta = {"version": "1.0.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": sorted({g.geom_type for g in geoms}),
                                     "crs": CRS.from_wkt(crs.to_wkt()).to_json_dict(),
                                     "bbox": [float(v) for v in shapely.total_bounds(geoms)]}}}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("geometry", pa.array(shapely.to_wkb(geoms), pa.binary()))
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- Grad-CAM
_SCENE_HEADERS: dict[str, tuple] = {}


def _scene_header(uri: str) -> tuple:
    if uri not in _SCENE_HEADERS:
        from landslide.inventory.tiles import open_raster

        with open_raster(uri) as ds:
            _SCENE_HEADERS[uri] = (ds.crs, ds.transform)
    return _SCENE_HEADERS[uri]


def cam_geotiff(overlay: np.ndarray, row: pd.Series) -> bytes:
    """A Grad-CAM overlay (``(S, S, 3)`` uint8, the model's input size) as an RGB GeoTIFF that drapes where
    the tile lies: a scene window by the scene's CRS and the window's transform, an XYZ/TMS tile in EPSG:3857,
    any other tile over its lon/lat footprint (EPSG:4326; east + 360 for a footprint across 180°)."""
    from rasterio.crs import CRS
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine, from_bounds

    height, width = overlay.shape[:2]
    if row["window"]:
        crs, scene_transform = _scene_header(row["uri"])
        col, r, w, h = (int(v) for v in str(row["window"]).split(","))
        transform = scene_transform * Affine.translation(col, r) * Affine.scale(w / width, h / height)
    elif is_xyz_id(row["tile_id"]):
        import mercantile

        x0, y0 = mercantile.xy(row["west"], row["south"])
        x1, y1 = mercantile.xy(row["east"], row["north"])
        crs, transform = CRS.from_epsg(3857), from_bounds(x0, y0, x1, y1, width, height)
    else:
        east = row["east"] + 360 if row["west"] > row["east"] else row["east"]
        crs, transform = CRS.from_epsg(4326), from_bounds(row["west"], row["south"], east, row["north"], width, height)
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=crs,
                      transform=transform, photometric="RGB", compress="DEFLATE") as dst:
            dst.write(np.moveaxis(overlay, -1, 0))
        return mem.read()


def is_xyz_id(tile_id: str) -> bool:
    """Whether a tile id is an XYZ/TMS address ``z/x/y``."""
    parts = str(tile_id).split("/")
    return len(parts) == 3 and all(p.isdigit() for p in parts)


# ----------------------------------------------------------------------------------------------- preview
PREVIEW_MAX_BOXES = 200_000
"""The preview keeps at most this many tiles (every k-th beyond it, drawn as window centres)."""


def preview_png(tiles: pd.DataFrame, areas: list, region, title: str, threshold: float, every: int = 1) -> bytes:
    """A map of the sweep as PNG bytes: ``tiles`` (``west, south, east, north, probability, status``; every
    ``every``-th tile of the sweep when it is sampled), the dissolved ``areas`` (lon/lat shapely geometries)
    and the ``region`` (lon/lat geometry or None)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection, PolyCollection
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    w_all, s_all, e_all, n_all = lonlat.bounds(tiles) if len(tiles) else (-1.0, -1.0, 1.0, 1.0)
    crossing = w_all > e_all

    def shift(lon):
        lon = np.asarray(lon, float)
        return np.where(lon < w_all, lon + 360, lon) if crossing else lon

    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    west, east = shift(tiles["west"]), shift(tiles["east"])
    east = np.where(east < west, east + 360, east)
    south, north = tiles["south"].to_numpy(float), tiles["north"].to_numpy(float)
    ok = (tiles["status"] == "ok").to_numpy()
    probs = tiles["probability"].to_numpy(float)
    cmap = plt.get_cmap("viridis")
    if every == 1:
        verts = np.stack([np.column_stack([west, south]), np.column_stack([east, south]),
                          np.column_stack([east, north]), np.column_stack([west, north])], axis=1)
        if (~ok).any():
            ax.add_collection(PolyCollection(verts[~ok], facecolors="0.8", edgecolors="none", label="not scored"))
        order = np.argsort(probs[ok], kind="stable")  # overlapping windows: the highest probability on top
        coll = PolyCollection(verts[ok][order], array=probs[ok][order], cmap=cmap, edgecolors="none")
        coll.set_clim(0, 1)
        ax.add_collection(coll)
    else:
        coll = ax.scatter((west + east)[ok] / 2, (south + north)[ok] / 2, c=probs[ok], cmap=cmap, s=1,
                          vmin=0, vmax=1)
    fig.colorbar(coll, ax=ax, shrink=0.8, label=f"landslide probability (threshold {threshold:.2f})")

    def patches(geom, **style):
        out = []
        for poly in getattr(geom, "geoms", [geom]):
            if poly.geom_type != "Polygon" or poly.is_empty:
                continue
            rings = [poly.exterior, *poly.interiors]
            verts = np.concatenate([np.column_stack([shift(np.asarray(r.coords)[:, 0]),
                                                     np.asarray(r.coords)[:, 1]]) for r in rings])
            codes = np.concatenate([[MplPath.MOVETO] + [MplPath.LINETO] * (len(r.coords) - 1) for r in rings])
            out.append(PathPatch(MplPath(verts, codes), **style))
        return out

    area_patches = [p for g in areas for p in patches(g, fill=False)]
    if area_patches:
        ax.add_collection(PatchCollection(area_patches, facecolor="none", edgecolor="red", linewidth=1.2))
    if region is not None:
        ax.add_collection(PatchCollection(patches(region, fill=False), facecolor="none", edgecolor="black",
                                          linestyle="--", linewidth=1))
    x0, x1 = float(np.min(west)) if len(tiles) else -1, float(np.max(east)) if len(tiles) else 1
    pad_x, pad_y = (x1 - x0) * 0.03 or 0.001, (n_all - s_all) * 0.03 or 0.001
    ax.set_xlim(x0 - pad_x, x1 + pad_x)
    ax.set_ylim(s_all - pad_y, n_all + pad_y)
    ax.set_aspect(1 / max(math.cos(math.radians((s_all + n_all) / 2)), 0.01))
    ax.set_xlabel("longitude (°E" + (", past 180° continued" if crossing else "") + ")")
    ax.set_ylabel("latitude (°N)")
    counts = (f"{int(ok.sum())} scored, {int((~ok).sum())} not scored" if every == 1
              else f"1 in {every} windows drawn (centres)")
    ax.set_title(f"{title}\n{counts}; red: landslide areas", fontsize=9)
    ax.ticklabel_format(useOffset=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
