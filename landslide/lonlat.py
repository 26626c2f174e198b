"""Longitude/latitude footprints that know about the antimeridian (180°), as RFC 7946 describes them.

Conventions used everywhere in the project (tile indexes, regions, sweep outputs, the catalog):

- A footprint is ``west, south, east, north`` in degrees (EPSG:4326 / OGC:CRS84). When it crosses the
  antimeridian, ``west > east`` (RFC 7946 §5.2): a box from 179.5° to -179.0° spans 1.5° of longitude, not
  358.5°. ``west == -180`` and ``east == 180`` is the whole circle.
- As a geometry, a footprint that crosses 180° is cut into two parts, ``west..180`` and ``-180..east``, and is
  a MultiPolygon (RFC 7946 §3.1.9), so planar tools (shapely, QGIS, GeoParquet readers) see the right shape.
- Areas are on the WGS84 ellipsoid: boxes (edges along meridians and parallels) by the exact zone formula
  (:func:`box_area_km2`), any other (Multi)Polygon geodesically with pyproj (:func:`geometry_area_km2`), its
  edges densified so that edges along parallels stay parallels. Distances and seed boxes use a sphere of
  radius :data:`EARTH_RADIUS_KM` (IUGG mean radius); spatial splits keep their own rounded sphere
  (:data:`SPLIT_GRID_RADIUS_M`). Every Earth constant of the project is defined here.

This module imports only numpy, shapely, pyproj and ``antimeridian`` so that every layer (data, inventory,
catalog) can use it without pulling torch in.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import shapely

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG, R1), km."""

SPLIT_GRID_RADIUS_M = 6_371_000.0
"""The sphere spatial splits are defined on (:mod:`landslide.data.splits`: the block grid and the buffer
distances), 6,371 km rounded. Deliberately not :data:`EARTH_RADIUS_KM`: its extra 8.8 m would move block
edges by up to about 5 m at mid latitudes and re-deal the splits of experiments already recorded."""

Bounds = tuple[float, float, float, float]


def crosses(west, east) -> np.ndarray | bool:
    """True where a footprint crosses the antimeridian (``west > east``); works on scalars and arrays."""
    return np.asarray(west) > np.asarray(east) if np.ndim(west) else bool(west > east)


def lon_span(west, east) -> np.ndarray:
    """Longitude width in degrees (0..360) of footprints, crossing ones included."""
    w, e = np.asarray(west, float), np.asarray(east, float)
    return np.where(w > e, e - w + 360.0, e - w)


def normalize_lon(lon) -> np.ndarray | float:
    """Longitudes wrapped into [-180, 180) (180 itself is kept as 180)."""
    arr = np.asarray(lon, float)
    out = np.where(arr == 180.0, 180.0, (arr + 180.0) % 360.0 - 180.0)
    return float(out) if np.ndim(lon) == 0 else out


def footprint(west: float, south: float, east: float, north: float) -> shapely.Geometry:
    """One footprint as a Polygon, or a MultiPolygon cut at 180° when ``west > east``."""
    if west > east:
        return shapely.MultiPolygon([shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)])
    return shapely.box(west, south, east, north)


def footprints(west, south, east, north) -> np.ndarray:
    """Vectorised :func:`footprint`: an object array of Polygons (MultiPolygons where crossing)."""
    w, s, e, n = (np.asarray(v, float) for v in (west, south, east, north))
    out = shapely.box(w, s, e, n)
    for i in np.flatnonzero(w > e):
        out[i] = footprint(w[i], s[i], e[i], n[i])
    return out


WGS84_A_KM = 6378.137
"""WGS84 semi-major axis, km."""
WGS84_F = 1 / 298.257223563
"""WGS84 flattening."""
_E2 = WGS84_F * (2 - WGS84_F)
_E = math.sqrt(_E2)


def _authalic_q(lat_deg) -> np.ndarray:
    """Snyder's q(φ) (Map Projections: A Working Manual, USGS PP 1395, 1987, eq. 3-12) on WGS84: the area
    between the equator and latitude φ over Δλ radians of longitude is a² · Δλ · q(φ) / 2."""
    sin = np.sin(np.radians(np.asarray(lat_deg, float)))
    return (1 - _E2) * (sin / (1 - _E2 * sin ** 2) - np.log((1 - _E * sin) / (1 + _E * sin)) / (2 * _E))


def box_area_km2(west, south, east, north) -> np.ndarray:
    """Areas (km²) of lon/lat boxes on the WGS84 ellipsoid, exact for edges along meridians and parallels
    (as tile footprints have): a² · Δλ · (q(φn) − q(φs)) / 2 (:func:`_authalic_q`); boxes across 180° by their
    true width. Vectorised over arrays."""
    return WGS84_A_KM ** 2 * np.radians(lon_span(west, east)) * (_authalic_q(north) - _authalic_q(south)) / 2


AREA_DENSIFY_DEG = 0.01
"""Longest edge (degrees) before a geodesic area is taken: edges along parallels are densified so the
geodesics between vertices follow them (error < 1e-7 relative for a 1° box at 60°N)."""


def geometry_area_km2(geom: shapely.Geometry) -> float:
    """Geodesic area (km²) of a lon/lat (Multi)Polygon on the WGS84 ellipsoid, holes subtracted (pyproj's
    ``Geod.geometry_area_perimeter``, Karney 2013), after densifying edges to :data:`AREA_DENSIFY_DEG`.
    Geometries must not cross 180° uncut (use :func:`footprint` / :func:`fix_geometry` first). Other
    geometry types have no area (0)."""
    if geom is None or geom.is_empty:
        return 0.0
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polys:
        return 0.0
    dense = shapely.segmentize(shapely.orient_polygons(shapely.MultiPolygon(
        [p for g in polys for p in getattr(g, "geoms", [g])]), exterior_cw=False), AREA_DENSIFY_DEG)
    area, _ = _geod().geometry_area_perimeter(dense)
    return abs(float(area)) / 1e6


_GEOD = None


def _geod():
    global _GEOD
    if _GEOD is None:
        from pyproj import Geod

        _GEOD = Geod(ellps="WGS84")
    return _GEOD


def union_area_km2(geoms) -> float:
    """Area (km²) of the union of lon/lat (Multi)Polygons: overlaps counted once (:func:`geometry_area_km2`)."""
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    return geometry_area_km2(shapely.union_all(geoms)) if geoms else 0.0


def extent(west: Sequence[float], east: Sequence[float]) -> tuple[float, float]:
    """The shortest longitude interval (west, east) that covers every interval given (crossing ones too):
    ``west > east`` when the smallest cover crosses 180°, ``(-180, 180)`` when they cover the whole circle."""
    w, e = np.asarray(west, float), np.asarray(east, float)
    if w.size == 0:
        raise ValueError("extent of no intervals")
    if np.any(lon_span(w, e) >= 360.0):
        return -180.0, 180.0
    cross = w > e
    starts = np.concatenate([w[~cross], w[cross], np.full(int(cross.sum()), -180.0)])
    ends = np.concatenate([e[~cross], np.full(int(cross.sum()), 180.0), e[cross]])
    order = np.argsort(starts, kind="stable")
    merged: list[list[float]] = []
    for a, b in zip(starts[order], ends[order]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([float(a), float(b)])
    # the largest gap between covered stretches (the wrap-around one included) is what the extent leaves out
    gaps = [(merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1)]
    wrap = merged[0][0] + 360.0 - merged[-1][1]
    if not gaps or wrap >= max(gaps)[0]:
        if wrap <= 0:
            return -180.0, 180.0
        return merged[0][0], merged[-1][1]
    _, i = max(gaps)
    return merged[i + 1][0], merged[i][1]


def bounds(frame_or_geoms) -> Bounds:
    """RFC 7946 bbox ``[west, south, east, north]`` of footprints (a frame with west/south/east/north columns)
    or of lon/lat geometries (parts touching ±180 are joined across it)."""
    if hasattr(frame_or_geoms, "columns"):
        df = frame_or_geoms
        w, e = extent(df["west"].to_numpy(float), df["east"].to_numpy(float))
        return w, float(df["south"].min()), e, float(df["north"].max())
    geoms = [g for g in frame_or_geoms if g is not None and not g.is_empty]
    parts = [p for g in geoms for p in getattr(g, "geoms", [g])]
    if not parts:
        raise ValueError("bounds of no geometries")
    b = np.array([p.bounds for p in parts])
    w, e = extent(b[:, 0], b[:, 2])
    return w, float(b[:, 1].min()), e, float(b[:, 3].max())


def parts_bounds(geom: shapely.Geometry) -> list[Bounds]:
    """Bounds of each polygon of a (Multi)Polygon: none of them crosses 180°, so plain min/max tests hold."""
    return [tuple(float(v) for v in p.bounds) for p in getattr(geom, "geoms", [geom]) if not p.is_empty]


def split_box(west: float, south: float, east: float, north: float) -> list[Bounds]:
    """A bbox as boxes that do not cross 180° (one, or two when ``west > east``)."""
    if west > east:
        return [(west, south, 180.0, north), (-180.0, south, east, north)]
    return [(west, south, east, north)]


def intersects_boxes(df, boxes: Iterable[Bounds]) -> np.ndarray:
    """Rows of a footprint frame whose box shares area with any of ``boxes`` (each not crossing 180°):
    a vectorised pre-filter, exact for boxes, before any polygon test."""
    w, s, e, n = (df[c].to_numpy(float) for c in ("west", "south", "east", "north"))
    cross = w > e
    hit = np.zeros(len(w), bool)
    for bw, bs, be, bn in boxes:
        lat = (n > bs) & (s < bn)
        lon = np.where(cross, (be > w) | (bw < e), (e > bw) & (w < be))
        hit |= lat & lon
    return hit


def in_lon_interval(lon, west: float, east: float) -> np.ndarray:
    """Points whose longitude lies in [west, east] (crossing 180° when ``west > east``)."""
    lon = np.asarray(lon, float)
    return (lon >= west) | (lon <= east) if west > east else (lon >= west) & (lon <= east)


def fix_geometry(geom: shapely.Geometry) -> shapely.Geometry:
    """A lon/lat (Multi)Polygon as RFC 7946 wants it: a ring that jumps across 180° (e.g. 179° -> -179°, as
    many tools write such shapes) is cut there into a MultiPolygon, with ``antimeridian`` (the library STAC
    tools use); shapes that do not cross come back unchanged. Edges are straight in lon/lat."""
    import antimeridian

    if not _jumps_antimeridian(geom):
        return geom
    if geom.geom_type == "MultiPolygon":
        return antimeridian.fix_multi_polygon(geom, great_circle=False)
    return antimeridian.fix_polygon(geom, great_circle=False)


def _jumps_antimeridian(geom: shapely.Geometry) -> bool:
    for poly in getattr(geom, "geoms", [geom]):
        for ring in [poly.exterior, *poly.interiors]:
            lon = np.asarray(ring.coords)[:, 0]
            if len(lon) > 1 and np.any(np.abs(np.diff(lon)) > 180.0):
                return True
    return False


def join_across_antimeridian(polygons: list[shapely.Geometry], tolerance: float = 1e-9) -> list[shapely.Geometry]:
    """Group polygons (none crossing 180°) so that parts which meet across the antimeridian — one touching
    +180, the other -180 over a common stretch of latitude — become one MultiPolygon; others stay as given."""
    n = len(polygons)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def edge(poly, lon: float) -> list[tuple[float, float]]:
        line = shapely.LineString([(lon, -90.0), (lon, 90.0)])
        cut = poly.boundary.intersection(line)
        spans = []
        for g in getattr(cut, "geoms", [cut]):
            if g.geom_type == "LineString" and not g.is_empty:
                ys = [c[1] for c in g.coords]
                spans.append((min(ys), max(ys)))
        return spans

    east_edges = {i: edge(p, 180.0) for i, p in enumerate(polygons) if p.bounds[2] >= 180.0 - tolerance}
    west_edges = {i: edge(p, -180.0) for i, p in enumerate(polygons) if p.bounds[0] <= -180.0 + tolerance}
    for i, spans_e in east_edges.items():
        for j, spans_w in west_edges.items():
            if any(min(a1, b1) - max(a0, b0) > tolerance for a0, a1 in spans_e for b0, b1 in spans_w):
                parent[find(i)] = find(j)
    groups: dict[int, list[shapely.Geometry]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(polygons[i])
    out = []
    for members in groups.values():
        out.append(members[0] if len(members) == 1 else shapely.MultiPolygon(
            [p for m in members for p in getattr(m, "geoms", [m])]))
    return out


def box_around(lat: float, lon: float, side_km: float) -> Bounds:
    """A square-ish lon/lat box of ``side_km`` centred on a point, wrapped at 180° (``west > east`` there)
    and clipped at the poles; a box wider than the parallel's circumference is the whole band."""
    half_lat = math.degrees(side_km / 2 / EARTH_RADIUS_KM)
    s, n = max(lat - half_lat, -90.0), min(lat + half_lat, 90.0)
    cos_lat = math.cos(math.radians(lat))
    if cos_lat <= 1e-9 or n >= 90.0 or s <= -90.0:
        return -180.0, s, 180.0, n
    half_lon = math.degrees(side_km / 2 / (EARTH_RADIUS_KM * cos_lat))
    if half_lon >= 180.0:
        return -180.0, s, 180.0, n
    return float(normalize_lon(lon - half_lon)), s, float(normalize_lon(lon + half_lon)), n
