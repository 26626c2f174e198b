"""The area to sweep: a lon/lat bbox or a GeoJSON (Multi)Polygon, in EPSG:4326.

Pruning happens on the tile index (footprints), before a single tile is read: a vectorised bbox test first,
then an exact polygon intersection for the candidates.

The antimeridian: a bbox with ``west > east`` crosses 180° (RFC 7946 §5.2), and a polygon whose ring jumps
across 180° (179° -> -179°) is cut there; both become MultiPolygons with one part on each side, and tiles
whose footprint crosses 180° are tested with both of their parts (see :mod:`landslide.lonlat`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape

from landslide import lonlat, storage
from landslide.config import RegionConfig
from landslide.errors import ConfigError, StorageError


@dataclass
class Region:
    geometry: shapely.Geometry | None
    """None: everywhere."""
    description: str

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        """RFC 7946 bbox (``west > east`` when the region crosses 180°), or None for everywhere."""
        return None if self.geometry is None else lonlat.bounds([self.geometry])

    @property
    def boxes(self) -> list[tuple[float, float, float, float]] | None:
        """Bounds of each polygon of the region (none crosses 180°): what listing and pre-filters test."""
        return None if self.geometry is None else lonlat.parts_bounds(self.geometry)

    def select(self, index: pd.DataFrame) -> pd.DataFrame:
        """Rows of a tile index whose footprint intersects the region (touching edges do not count)."""
        if self.geometry is None or index.empty:
            return index
        near = index[lonlat.intersects_boxes(index, self.boxes)]
        if near.empty:
            return near
        shapes = lonlat.footprints(near["west"], near["south"], near["east"], near["north"])
        shapely.prepare(self.geometry)
        # shared area, not a shared edge: a tile cut at 180° touches a region on the other side only there
        hit = shapely.area(shapely.intersection(self.geometry, shapes)) > 0
        return near[np.asarray(hit)].reset_index(drop=True)

    def to_geojson(self) -> dict | None:
        return None if self.geometry is None else shapely.geometry.mapping(self.geometry)


def _geometry_of(doc: dict, source: str) -> shapely.Geometry:
    kind = doc.get("type")
    if kind == "FeatureCollection":
        geoms = [_geometry_of(f, source) for f in doc.get("features", [])]
        if not geoms:
            raise ConfigError(f"region {source}: empty FeatureCollection")
        return shapely.union_all(geoms)
    if kind == "Feature":
        return _geometry_of(doc.get("geometry") or {}, source)
    if kind not in ("Polygon", "MultiPolygon"):
        raise ConfigError(f"region {source}: geometry must be a Polygon or MultiPolygon, got {kind!r}")
    try:
        geom = shape(doc)
    except Exception as exc:
        raise ConfigError(f"region {source}: invalid geometry ({exc})") from None
    w, s, e, n = geom.bounds
    if not (-360 <= w and e <= 360 and -90 <= s and n <= 90):
        raise ConfigError(f"region {source}: coordinates {list(geom.bounds)} are not lon/lat degrees "
                          "(GeoJSON is EPSG:4326)")
    if w < -180 or e > 180:  # 0..360 longitudes (some tools write them): wrap, then cut at 180 below
        geom = shapely.transform(geom, lambda xy: np.column_stack([lonlat.normalize_lon(xy[:, 0]), xy[:, 1]]))
    geom = lonlat.fix_geometry(geom)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def load_region(cfg: RegionConfig) -> Region:
    """The region a config describes (bbox and polygon together: their intersection)."""
    geometry, parts = None, []
    if cfg.geojson:
        try:
            doc = storage.read_json(cfg.geojson)
        except StorageError as exc:
            raise ConfigError(f"region.geojson: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"region {cfg.geojson}: not a GeoJSON object")
        geometry = _geometry_of(doc, cfg.geojson)
        parts.append(f"polygon {cfg.geojson}")
    if cfg.bbox is not None:
        b = lonlat.footprint(*cfg.bbox)
        geometry = b if geometry is None else geometry.intersection(b)
        parts.append("bbox " + ",".join(f"{v:.6f}".rstrip("0").rstrip(".") for v in cfg.bbox))
    if geometry is not None and geometry.is_empty:
        raise ConfigError("region: the bbox and the polygon do not overlap")
    return Region(geometry, " and ".join(parts) or "all tiles")
