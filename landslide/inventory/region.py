"""The area to sweep: a lon/lat bbox or a GeoJSON (Multi)Polygon, in EPSG:4326.

Pruning happens on the tile index (footprints), before a single tile is read: a vectorised bbox test first,
then an exact polygon intersection for the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import box, shape

from landslide import storage
from landslide.config import RegionConfig
from landslide.errors import ConfigError, StorageError


@dataclass
class Region:
    geometry: shapely.Geometry | None
    """None: everywhere."""
    description: str

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        return None if self.geometry is None else tuple(float(v) for v in self.geometry.bounds)

    def select(self, index: pd.DataFrame) -> pd.DataFrame:
        """Rows of a tile index whose footprint intersects the region (touching edges do not count)."""
        if self.geometry is None or index.empty:
            return index
        w, s, e, n = self.bbox
        near = index[(index["east"] > w) & (index["west"] < e) & (index["north"] > s) & (index["south"] < n)]
        if near.empty:
            return near
        boxes = shapely.box(near["west"].to_numpy(), near["south"].to_numpy(), near["east"].to_numpy(),
                            near["north"].to_numpy())
        shapely.prepare(self.geometry)
        hit = shapely.intersects(self.geometry, boxes) & ~shapely.touches(self.geometry, boxes)
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
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    w, s, e, n = geom.bounds
    if not (-180 <= w and e <= 180 and -90 <= s and n <= 90):
        raise ConfigError(f"region {source}: coordinates {list(geom.bounds)} are not lon/lat degrees "
                          "(GeoJSON is EPSG:4326)")
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
        b = box(*cfg.bbox)
        geometry = b if geometry is None else geometry.intersection(b)
        parts.append("bbox " + ",".join(f"{v:.6f}".rstrip("0").rstrip(".") for v in cfg.bbox))
    if geometry is not None and geometry.is_empty:
        raise ConfigError("region: the bbox and the polygon do not overlap")
    return Region(geometry, " and ".join(parts) or "all tiles")
