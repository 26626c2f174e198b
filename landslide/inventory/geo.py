"""Geo outputs QGIS opens directly: GeoParquet (WKB geometry + ``geo`` metadata, GeoParquet 1.0) and GeoJSON
FeatureCollections (RFC 7946, EPSG:4326 lon/lat), plus dissolving adjacent positive tiles into polygons."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

GEOPARQUET_VERSION = "1.0.0"
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)


def tile_boxes(df: pd.DataFrame) -> np.ndarray:
    """Shapely boxes of the tiles' lon/lat footprints."""
    return shapely.box(df["west"].to_numpy(float), df["south"].to_numpy(float), df["east"].to_numpy(float),
                       df["north"].to_numpy(float))


def geoparquet_schema(schema: pa.Schema, bbox: list[float] | None = None,
                      geometry_types: list[str] | None = None) -> pa.Schema:
    """``schema`` plus a WKB ``geometry`` column and GeoParquet metadata (CRS: OGC:CRS84, the default)."""
    column = {"encoding": "WKB", "geometry_types": geometry_types or ["Polygon"]}
    if bbox:
        column["bbox"] = bbox
    meta = {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}
    schema = schema.append(pa.field("geometry", pa.binary()))
    return schema.with_metadata({**(schema.metadata or {}), b"geo": json.dumps(meta).encode()})


def with_geometry(table: pa.Table, df: pd.DataFrame) -> pa.Table:
    """Append the tiles' footprints as WKB to an Arrow table of the same rows."""
    return table.append_column("geometry", pa.array(shapely.to_wkb(tile_boxes(df)), pa.binary()))


def _clean(value):
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def feature(geometry, properties: dict) -> dict:
    return {"type": "Feature", "geometry": shapely.geometry.mapping(geometry),
            "properties": {k: _clean(v) for k, v in properties.items()}}


def feature_collection(features: list[dict], **members) -> dict:
    return {"type": "FeatureCollection", **members, "features": features}


def tile_features(df: pd.DataFrame, columns: list[str]) -> list[dict]:
    """One Polygon feature per tile row with ``columns`` as properties."""
    return [feature(geom, {c: row[c] for c in columns})
            for geom, (_, row) in zip(tile_boxes(df), df.iterrows())]


def dissolve(df: pd.DataFrame) -> list[dict]:
    """Adjacent or overlapping tiles merged into polygons, each with its tile count, area and probabilities."""
    if df.empty:
        return []
    boxes = tile_boxes(df)
    merged = shapely.union_all(boxes)
    parts = list(getattr(merged, "geoms", [merged]))
    tree = shapely.STRtree(boxes)
    probs = df["probability"].to_numpy(float)
    out = []
    for i, part in enumerate(sorted(parts, key=lambda g: (g.bounds[1], g.bounds[0]))):
        members = tree.query(part, predicate="intersects")
        members = [m for m in members if shapely.area(shapely.intersection(boxes[m], part)) > 0]
        out.append(feature(part, {"area_id": i, "tiles": len(members), "area_km2": spherical_area_km2(part),
                                  "max_probability": float(probs[members].max()),
                                  "mean_probability": float(probs[members].mean())}))
    return out


def tile_area_km2(df: pd.DataFrame) -> float:
    """Total area of the tiles' footprints on a sphere of radius 6371.0088 km (overlaps counted twice)."""
    if df.empty:
        return 0.0
    r = EARTH_RADIUS_KM
    lat = np.radians(df[["south", "north"]].to_numpy(float))
    dlon = np.radians((df["east"] - df["west"]).to_numpy(float))
    return float(np.sum(r * r * dlon * (np.sin(lat[:, 1]) - np.sin(lat[:, 0]))))


def spherical_area_km2(geom) -> float:
    """Area of a lon/lat polygon on a sphere of radius 6371.0088 km (exact for boxes, close for small shapes)."""
    r = EARTH_RADIUS_KM

    def ring_area(coords) -> float:
        lon, lat = np.radians(np.asarray(coords)[:, 0]), np.radians(np.asarray(coords)[:, 1])
        return abs(float(np.sum((lon[1:] - lon[:-1]) * (np.sin(lat[1:]) + np.sin(lat[:-1])) / 2))) * r * r

    total = 0.0
    for poly in getattr(geom, "geoms", [geom]):
        total += ring_area(poly.exterior.coords) - sum(ring_area(h.coords) for h in poly.interiors)
    return total
