"""Landslide footprints from a probability raster: polygons with areas, as inventories hold them.

:func:`vectorize` turns a georeferenced ``(H, W)`` landslide probability raster (a model's output over a
window, a scene or a stitched region) into one footprint per 8-connected group of pixels at or above a
threshold:

- polygons traced along pixel edges by GDAL's polygonizer (``rasterio.features.shapes``), holes kept;
- optionally simplified (Douglas-Peucker, topology preserved) with a tolerance in metres, whatever the CRS:
  in the CRS's own linear unit when it is projected, in a local azimuthal equidistant projection around each
  footprint when it is geographic;
- each with its area in m² on the WGS84 ellipsoid (geodesic, pyproj: the same convention as every other
  area of the project, :mod:`landslide.lonlat`), its pixel count and the mean and max probability of its
  pixels; footprints below ``min_area_m2`` are dropped;
- each also in lon/lat (WGS84), cut at the antimeridian into a MultiPolygon where it crosses 180° (RFC 7946).

No-data pixels (NaN, or ``nodata``) are never landslide.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy import ndimage

from landslide.lonlat import fix_geometry, geometry_area_km2, normalize_lon

_EIGHT = np.ones((3, 3), dtype=bool)


def _crs(crs):
    from pyproj import CRS

    return CRS.from_user_input(crs)


def _to_wgs84(crs):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def _lonlat(geom: shapely.Geometry, transformer) -> shapely.Geometry:
    """``geom`` in lon/lat, longitudes in [-180, 180], cut at 180° where it crosses."""
    out = shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    out = shapely.transform(out, lambda xy: np.column_stack([normalize_lon(xy[:, 0]), xy[:, 1]]))
    return fix_geometry(out)


def _simplify(geom: shapely.Geometry, tolerance_m: float, crs, transformer) -> shapely.Geometry:
    if tolerance_m <= 0:
        return geom
    if crs.is_projected:
        unit = crs.axis_info[0].unit_conversion_factor or 1.0  # metres per CRS unit
        return geom.simplify(tolerance_m / unit, preserve_topology=True)
    from pyproj import Transformer

    lon, lat = transformer.transform(geom.centroid.x, geom.centroid.y)
    local = f"+proj=aeqd +lat_0={lat} +lon_0={float(normalize_lon(lon))} +datum=WGS84 +units=m"
    there = Transformer.from_crs(crs, local, always_xy=True)
    back = Transformer.from_crs(local, crs, always_xy=True)
    flat = shapely.transform(geom, lambda xy: np.column_stack(there.transform(xy[:, 0], xy[:, 1])))
    flat = flat.simplify(tolerance_m, preserve_topology=True)
    return shapely.transform(flat, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))


def trace(probability: np.ndarray, threshold: float = 0.5, transform=None, nodata: float | None = None
          ) -> list[dict]:
    """Footprints of a ``(H, W)`` probability raster (values 0..1) without any geography: one dict per
    8-connected group of pixels at or above ``threshold``, the most pixels first: ``geometry`` (shapely,
    traced along pixel edges by GDAL's polygonizer, holes kept, made valid; in pixel coordinates, x right and
    y down from the raster's top-left corner, or through the affine ``transform`` when given), ``pixels``,
    ``mean_probability``, ``max_probability``. No-data pixels (NaN or ``nodata``) are never landslide.
    ValueError for a raster that is not 2-D or a threshold outside (0, 1]."""
    from rasterio import features
    from rasterio.transform import Affine

    prob = np.asarray(probability, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"probability raster must be (H, W), got shape {prob.shape}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    valid = np.isfinite(prob)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= prob != nodata
    mask = valid & (prob >= threshold)
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return []
    pixels, means, maxima = _label_stats(labels, prob, n)
    values, polygons = _polygons(features.shapes(labels.astype(np.int32), mask=mask, connectivity=8,
                                                 transform=transform if transform is not None
                                                 else Affine.identity()))
    parts: dict[int, list] = {}
    for value, polygon in zip(values.tolist(), polygons):
        parts.setdefault(value, []).append(polygon)
    out = []
    for label, geoms in parts.items():
        geom = shapely.union_all(geoms) if len(geoms) > 1 else geoms[0]
        if not geom.is_valid:  # pixels joined only at a corner: GDAL traces one self-touching ring
            geom = make_valid_rings(geom)
        i = label - 1
        out.append({"geometry": geom, "pixels": int(pixels[i]), "mean_probability": float(means[i]),
                    "max_probability": float(maxima[i])})
    out.sort(key=lambda f: -f["pixels"])
    return out


def _polygons(shapes) -> tuple[np.ndarray, np.ndarray]:
    """``(values, polygons)`` of GDAL's polygonizer output (``rasterio.features.shapes``: GeoJSON-like polygons
    with their raster values), the polygons built in one vectorised call (shell first, then holes, as GeoJSON
    orders them) rather than one shapely object per ring."""
    values, rings, ring_polygon = [], [], []
    for geom, value in shapes:
        for ring in geom["coordinates"]:
            rings.append(np.asarray(ring, dtype=np.float64))
            ring_polygon.append(len(values))
        values.append(int(value))
    if not values:
        return np.zeros(0, int), np.empty(0, dtype=object)
    lengths = np.array([len(r) for r in rings])
    linear = shapely.linearrings(np.concatenate(rings), indices=np.repeat(np.arange(len(rings)), lengths))
    return np.asarray(values), shapely.polygons(linear, indices=np.asarray(ring_polygon))


def _label_stats(labels: np.ndarray, prob: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count, mean and max of ``prob`` per label ``1..n`` of ``labels`` (0: background), each ``(n,)``:
    the same as scipy.ndimage's ``sum_labels``/``mean``/``maximum`` over ``index=1..n``, in one pass over the
    labelled pixels (bincount and a max-reduce over the pixels sorted by label) instead of three."""
    flat = labels.ravel()
    inside = flat > 0
    lab = flat[inside] - 1
    values = prob.ravel()[inside].astype(np.float64)
    pixels = np.bincount(lab, minlength=n)
    means = np.bincount(lab, weights=values, minlength=n) / pixels
    order = np.argsort(lab, kind="stable")
    starts = np.concatenate([[0], np.cumsum(pixels)[:-1]])  # every label 1..n has at least one pixel
    maxima = np.maximum.reduceat(values[order], starts)
    return pixels.astype(int), means, maxima


def make_valid_rings(geom: shapely.Geometry) -> shapely.Geometry:
    """A polygon traced from pixels made valid: GDAL's polygonizer traces pixels that touch only at a corner
    as one self-touching ring (invalid under OGC rules). Shapely's "structure" method (GEOS >= 3.10) rebuilds
    the polygon from its rings as shells and holes, which is what such rings are; it gives the same polygons
    as the default "linework" method on them, about ten times faster."""
    return shapely.make_valid(geom, method="structure", keep_collapsed=False)


def measure(footprints: list[dict], crs, min_area_m2: float = 0.0, simplify_m: float = 0.0) -> list[dict]:
    """Footprints traced in ``crs`` (:func:`trace` with a georeferencing transform) simplified by ``simplify_m``
    metres, with ``geometry_wgs84`` (lon/lat, cut at 180°) and a geodesic ``area_m2`` (WGS84); those under
    ``min_area_m2`` dropped; the largest first."""
    if not footprints:
        return []
    crs = _crs(crs)
    transformer = _to_wgs84(crs)
    out = []
    for footprint in footprints:
        geom = _simplify(footprint["geometry"], simplify_m, crs, transformer)
        if geom.is_empty:
            continue
        lonlat = _lonlat(shapely.segmentize(geom, _segment(geom)), transformer)
        area = geometry_area_km2(lonlat) * 1e6
        if area < min_area_m2:
            continue
        out.append({**footprint, "geometry": geom, "geometry_wgs84": lonlat, "area_m2": area})
    out.sort(key=lambda f: -f["area_m2"])
    return out


def touching_groups(n: int, left, right) -> list[list[int]]:
    """Indices ``0..n-1`` grouped by the pairs (``left[k]``, ``right[k]``) that join them (connected components,
    scipy's csgraph), each group in increasing order, groups ordered by their first index."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    left, right = np.asarray(left, int), np.asarray(right, int)
    graph = coo_matrix((np.ones(len(left), bool), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return list(groups.values())


def simplify_lonlat(geom: shapely.Geometry, tolerance_m: float) -> shapely.Geometry:
    """A lon/lat geometry simplified with a tolerance in metres (in a local azimuthal equidistant projection
    around it); one that spans the antimeridian (cut at 180°) is returned as it is."""
    if tolerance_m <= 0 or geom.is_empty:
        return geom
    minx, _, maxx, _ = geom.bounds
    if maxx - minx > 180:  # the two sides of a cut at 180°: no single local projection; keep it exact
        return geom
    crs = _crs("EPSG:4326")
    return fix_geometry(_simplify(geom, tolerance_m, crs, _to_wgs84(crs)))


def vectorize(probability: np.ndarray, transform, crs, threshold: float = 0.5, min_area_m2: float = 0.0,
              simplify_m: float = 0.0, nodata: float | None = None) -> list[dict]:
    """Footprints of a ``(H, W)`` probability raster (values 0..1) georeferenced by an affine ``transform``
    (rasterio/affine, pixel -> CRS coordinates) in ``crs`` (anything pyproj reads: EPSG code, WKT, rasterio
    CRS): :func:`trace`, then :func:`measure`. Returns one dict per footprint, largest first: ``geometry``
    (shapely, in ``crs``), ``geometry_wgs84`` (lon/lat), ``area_m2`` (geodesic, WGS84), ``pixels``,
    ``mean_probability``, ``max_probability``. ValueError for a raster that is not 2-D or a threshold outside
    (0, 1]."""
    return measure(trace(probability, threshold, transform, nodata), crs, min_area_m2, simplify_m)


def _segment(geom: shapely.Geometry) -> float:
    """Densifying step (CRS units) before reprojection: 1/8 of the footprint's shorter side, so that edges
    curved by the projection change stay close to their true shape."""
    minx, miny, maxx, maxy = geom.bounds
    return max(min(maxx - minx, maxy - miny) / 8, 1e-9)
