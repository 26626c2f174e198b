"""Geo outputs QGIS opens directly: GeoParquet (WKB geometry + ``geo`` metadata, GeoParquet 1.0) and GeoJSON
FeatureCollections (RFC 7946, EPSG:4326 lon/lat), plus dissolving adjacent positive tiles into polygons.

Footprints that cross the antimeridian (``west > east``) are written cut at 180° as MultiPolygons, and the
``bbox`` members follow RFC 7946 §5.2 (``west > east`` across 180°); see :mod:`landslide.lonlat`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from landslide import lonlat

GEOPARQUET_VERSION = "1.0.0"
EARTH_RADIUS_KM = lonlat.EARTH_RADIUS_KM


def tile_boxes(df: pd.DataFrame) -> np.ndarray:
    """The tiles' lon/lat footprints: Polygons, or MultiPolygons cut at 180° for tiles with ``west > east``."""
    return lonlat.footprints(df["west"], df["south"], df["east"], df["north"])


def geoparquet_schema(schema: pa.Schema, bbox: list[float] | None = None,
                      geometry_types: list[str] | None = None) -> pa.Schema:
    """``schema`` plus a WKB ``geometry`` column and GeoParquet metadata (CRS: OGC:CRS84, the default).
    ``bbox`` follows RFC 7946 as the GeoParquet spec says: ``west > east`` when the data cross 180°."""
    column = {"encoding": "WKB", "geometry_types": geometry_types or ["Polygon", "MultiPolygon"]}
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


GEOJSON_DECIMALS = 7
"""Coordinate precision of GeoJSON output: 1e-7 degrees is about 1 cm (RFC 7946 §11.2 advises no more
precision than the data have; tile and window corners are exact to far below that)."""


def _rounded(coords):
    if isinstance(coords, (float, int)):
        return round(float(coords), GEOJSON_DECIMALS)
    return [_rounded(c) for c in coords]


def geojson_geometry(geometry) -> dict:
    """A shapely geometry as an RFC 7946 GeoJSON geometry: polygon exteriors counter-clockwise and holes
    clockwise (§3.1.6), coordinates rounded to :data:`GEOJSON_DECIMALS` decimals (§11.2)."""
    if geometry.geom_type in ("Polygon", "MultiPolygon", "GeometryCollection"):
        geometry = shapely.orient_polygons(geometry, exterior_cw=False)
    mapped = shapely.geometry.mapping(geometry)
    if "coordinates" in mapped:
        mapped = {**mapped, "coordinates": _rounded(mapped["coordinates"])}
    return mapped


def feature(geometry, properties: dict) -> dict:
    """A GeoJSON Feature (see :func:`geojson_geometry`) with JSON-safe properties (NaN -> null)."""
    return {"type": "Feature", "geometry": geojson_geometry(geometry),
            "properties": {k: _clean(v) for k, v in properties.items()}}


def feature_collection(features: list[dict], **members) -> dict:
    return {"type": "FeatureCollection", **members, "features": features}


def tile_features(df: pd.DataFrame, columns: list[str]) -> list[dict]:
    """One Polygon feature per tile row with ``columns`` as properties."""
    return [feature(geom, {c: row[c] for c in columns})
            for geom, (_, row) in zip(tile_boxes(df), df.iterrows())]


def dissolve(df: pd.DataFrame) -> list[dict]:
    """Adjacent or overlapping tiles merged into polygons, each with its tile count, area and probabilities.
    An area that spans 180° is one feature (a MultiPolygon cut at the antimeridian)."""
    if df.empty:
        return []
    boxes = tile_boxes(df)
    merged = shapely.union_all(boxes)
    parts = lonlat.join_across_antimeridian(list(getattr(merged, "geoms", [merged])))
    tree = shapely.STRtree(boxes)
    probs = df["probability"].to_numpy(float)
    out = []
    for i, part in enumerate(sorted(parts, key=lambda g: (g.bounds[1], g.bounds[0]))):
        members = tree.query(part, predicate="intersects")
        members = [m for m in members if shapely.area(shapely.intersection(boxes[m], part)) > 0]
        out.append(feature(part, {"area_id": i, "tiles": len(members), "area_km2": area_km2(part),
                                  "max_probability": float(probs[members].max()),
                                  "mean_probability": float(probs[members].mean())}))
    return out


def tile_area_km2(df: pd.DataFrame) -> float:
    """Sum of the tiles' footprint areas on the WGS84 ellipsoid (km²; overlaps counted twice, tiles across 180°
    by their true width). What a sweep covered is :func:`union_area_km2`."""
    if df.empty:
        return 0.0
    return float(np.sum(lonlat.box_area_km2(df["west"], df["south"], df["east"], df["north"])))


def tile_union(df: pd.DataFrame):
    """The union of the tiles' footprints, or None for no tiles."""
    return shapely.union_all(tile_boxes(df)) if len(df) else None


SIMPLIFY_DEG = 1e-9
"""Precision grid (degrees, about 0.1 mm) of the swept-area union: snap rounding closes the hairline gaps between
tiles whose shared edges were computed one by one (they differ in the last bits), and simplifying by it drops
the collinear vertices tile corners leave along the outline. The outline moves by at most that much: the
swept area of a 2,000-tile grid moved by 4e-9 of itself (tests/test_sweep_outputs.py)."""


class GrowingUnion:
    """The union of tile footprints added batch by batch (a sweep's shards), at a cost that grows as
    n log n with the batches and holds at most log2(n) + 1 geometries.

    Each batch is unioned on its own, unions are merged like a binary counter (two of 2^i batches make one of
    2^(i+1)), so a large geometry takes part in about log2(n) unions instead of one per batch; every union is
    snap-rounded to :data:`SIMPLIFY_DEG` and simplified by it, so merged unions stay small. At 1,000,000 tiles
    (benchmarks/plan_scale.py) growing one union batch by batch had not finished in 10 minutes; with this the
    whole inventory merge took 117 s."""

    def __init__(self):
        self._levels: list = []  # _levels[i]: the union of 2**i batches, or None

    def add(self, df: pd.DataFrame) -> None:
        if not len(df):
            return
        carry = shapely.simplify(shapely.union_all(tile_boxes(df), grid_size=SIMPLIFY_DEG), SIMPLIFY_DEG)
        for i, held in enumerate(self._levels):
            if held is None:
                self._levels[i] = carry
                return
            carry = shapely.simplify(shapely.union_all([held, carry], grid_size=SIMPLIFY_DEG), SIMPLIFY_DEG)
            self._levels[i] = None
        self._levels.append(carry)

    def result(self):
        """The union so far (a (Multi)Polygon), or None when nothing was added."""
        parts = [g for g in self._levels if g is not None]
        return shapely.union_all(parts, grid_size=SIMPLIFY_DEG) if parts else None


def union_area_km2(df: pd.DataFrame) -> float:
    """Geodesic area (km², WGS84) of the union of the tiles' footprints: overlapping windows counted once."""
    return area_km2(tile_union(df))


def area_km2(geom) -> float:
    """Geodesic area (km², WGS84) of a lon/lat (Multi)Polygon cut at 180° (:func:`landslide.lonlat.geometry_area_km2`);
    0 for None."""
    return lonlat.geometry_area_km2(geom) if geom is not None else 0.0
