"""Tiles as scenes, for footprint sweeps of XYZ/TMS trees and tile manifests (issue 21).

A footprint sweep stitches overlapping windows over a georeferenced raster and traces polygons in it
(:mod:`landslide.inventory.scene_footprints`). Tile sources become such rasters here:

- **XYZ/TMS trees**: the tiles of one zoom are grouped into *metatiles* of ``size`` x ``size`` tiles (the unit
  of rendering in map-tile servers, here the unit of work and resumption). A metatile's tiles are mosaicked
  into a temporary RGBA GeoTIFF in EPSG:3857 (Web Mercator, the tree's own CRS) on the tile grid; absent and
  corrupt tiles are transparent (nodata), so windows over them are skipped; a tile that cannot be fetched
  fails the metatile, which the next run tries again. Windows see across the tile
  borders inside a metatile; footprints cut by a metatile's border are merged afterwards like footprints
  across scene borders.
- **Tile manifests and GeoJSON indexes**: each listed tile is a scene of its own, georeferenced from its
  lon/lat bounds in EPSG:4326 (a tile across 180° gets east + 360, which the lon/lat output cuts at 180°).

Decoding goes through :func:`landslide.inventory.tiles.load_tile`: the same size limits, formats and errors as
the chip sweep, with transparent pixels as nodata.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from landslide.errors import ImageError
from landslide.inventory.tiles import load_tile

log = logging.getLogger(__name__)

WEB_MERCATOR_HALF = 20037508.342789244
"""Half the side of the Web Mercator square in metres (EPSG:3857: pi x 6378137)."""


@dataclass(frozen=True)
class TileGroup:
    """Tiles swept as one scene: ``key`` names it in the sweep's output; ``crs`` is ``EPSG:3857`` (an XYZ
    metatile, ``zoom``/``col``/``row`` its top-left tile in XYZ order) or ``EPSG:4326`` (one listed tile)."""

    key: str
    tiles: pd.DataFrame = field(repr=False, compare=False)
    crs: str
    zoom: int | None = None


def _xyz_rows(index: pd.DataFrame) -> pd.DataFrame:
    """``z, x, y`` of each tile of an XYZ/TMS index, ``y`` counted from the north (XYZ order) whatever the
    tree's scheme: from each tile's bounds, which the index already placed."""
    import mercantile

    ids = index["tile_id"].str.extract(r"^(\d+)/(\d+)/(\d+)$").astype(int)
    lat = (index["south"].to_numpy(float) + index["north"].to_numpy(float)) / 2
    lon = (index["west"].to_numpy(float) + index["east"].to_numpy(float)) / 2
    y = [mercantile.tile(lo, la, int(z)).y for lo, la, z in zip(lon, lat, ids[0])]
    return pd.DataFrame({"z": ids[0].to_numpy(), "x": ids[1].to_numpy(), "y": y}, index=index.index)


def metatiles(index: pd.DataFrame, size: int) -> list[TileGroup]:
    """An XYZ/TMS index (one zoom) cut into metatiles of ``size`` x ``size`` tiles, in row-major order; keys
    ``z{z}-m{size}-{mx}-{my}`` (metatile column and row in XYZ order)."""
    xyz = _xyz_rows(index)
    keys = xyz["x"] // size, xyz["y"] // size
    groups = []
    for (mx, my), part in index.groupby([keys[0], keys[1]], sort=True):
        z = int(xyz.loc[part.index[0], "z"])
        tiles = part.assign(x=xyz.loc[part.index, "x"], y=xyz.loc[part.index, "y"])
        groups.append(TileGroup(f"z{z}-m{size}-{int(mx)}-{int(my)}", tiles, "EPSG:3857", z))
    groups.sort(key=lambda g: (int(g.key.rsplit("-", 1)[1]), int(g.key.rsplit("-", 2)[1])))
    return groups


def listed_tiles(index: pd.DataFrame) -> list[TileGroup]:
    """A tile manifest's or GeoJSON index's tiles, each a scene of its own (key ``tile-`` + a hash of its
    ``tile_id``, stable across runs)."""
    return [TileGroup("tile-" + hashlib.sha1(str(row["tile_id"]).encode()).hexdigest()[:16],
                      index.loc[[i]], "EPSG:4326") for i, row in index.iterrows()]


def _read(row: pd.Series, max_pixels: int, max_bytes: int | None):
    """A tile decoded, or its reason: an ImageError (corrupt, too large, not an image) is the tile's own
    problem and leaves nodata; a StorageError (missing, unreachable) is raised, so the group is retried."""
    try:
        return load_tile(row["uri"], "", max_pixels, max_bytes), None
    except ImageError as exc:
        return None, str(exc)


def fingerprint(group: TileGroup) -> str:
    """A short hash of the group's tile ids: a metatile swept with other tiles (a wider region) is not the same
    job, so a rerun sweeps it again rather than keep it."""
    ids = "\n".join(sorted(str(t) for t in group.tiles["tile_id"]))
    return hashlib.sha1(ids.encode()).hexdigest()[:16]


def write_mosaic(group: TileGroup, path: str, threads: int = 4, max_pixels: int = 64_000_000,
                 max_bytes: int | None = None) -> dict:
    """Mosaic ``group``'s tiles into an RGBA GeoTIFF at the local ``path`` (alpha 0 = nodata: transparent,
    absent or corrupt tiles). Tiles are read in ``threads`` threads, within ``max_pixels`` / ``max_bytes``. An
    XYZ tile of another size than the metatile's most common tile side is resized to it (logged).
    StorageError when a tile cannot be fetched (a missing file, storage unreachable): nothing is written and
    the caller records the group as failed. Returns ``{tiles, unreadable: [{tile_id, reason}], width, height,
    crs}``; a group with no readable tile writes nothing and returns ``width`` 0."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_bounds

    from PIL import Image

    from landslide.data.images import resize

    rows = [row for _, row in group.tiles.iterrows()]
    with cf.ThreadPoolExecutor(max(1, threads)) as pool:
        decoded = list(pool.map(lambda r: _read(r, max_pixels, max_bytes), rows))
    unreadable = [{"tile_id": str(r["tile_id"]), "reason": err} for r, (_, err) in zip(rows, decoded) if err]
    ok = [(r, d) for r, (d, _) in zip(rows, decoded) if d is not None]
    result = {"tiles": len(rows), "unreadable": unreadable, "width": 0, "height": 0, "crs": group.crs}
    if not ok:
        return result
    if group.crs == "EPSG:3857":
        sides = Counter(max(d.rgb.shape[:2]) for _, d in ok)
        side = max(sides, key=lambda v: (sides[v], v))  # the most common side; the larger on ties
        if len(sides) > 1:
            log.warning("metatile %s: tiles of %s px; resized to %d px", group.key, sorted(sides), side)
        x0, y0 = int(group.tiles["x"].min()), int(group.tiles["y"].min())
        cols, nrows = int(group.tiles["x"].max()) - x0 + 1, int(group.tiles["y"].max()) - y0 + 1
        width, height = cols * side, nrows * side
        span = 2 * WEB_MERCATOR_HALF / 2 ** group.zoom  # metres per tile
        west, north = -WEB_MERCATOR_HALF + x0 * span, WEB_MERCATOR_HALF - y0 * span
        transform = from_bounds(west, north - nrows * span, west + cols * span, north, width, height)
        placed = [((int(r["y"]) - y0) * side, (int(r["x"]) - x0) * side, side, side, d) for r, d in ok]
    else:
        row, d = ok[0]
        height, width = d.rgb.shape[:2]
        east = float(row["east"]) + (360.0 if float(row["west"]) > float(row["east"]) else 0.0)
        transform = from_bounds(float(row["west"]), float(row["south"]), east, float(row["north"]), width, height)
        placed = [(0, 0, height, width, d)]
    rgba = np.zeros((4, height, width), np.uint8)
    for top, left, h, w, d in placed:
        rgb, valid = d.rgb, d.valid
        if rgb.shape[:2] != (h, w):  # an XYZ tile of another size than the metatile's (h == w)
            rgb = resize(rgb, h)
            if valid is not None:
                valid = np.asarray(Image.fromarray(valid).resize((w, h), Image.Resampling.NEAREST))
        rgba[:3, top:top + h, left:left + w] = np.moveaxis(rgb, -1, 0)
        rgba[3, top:top + h, left:left + w] = 255 if valid is None else valid.astype(np.uint8) * 255
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 4, "dtype": "uint8",
               "crs": group.crs, "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "photometric": "RGB", "alpha": "YES"}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(rgba)
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    result.update(width=width, height=height)
    return result
