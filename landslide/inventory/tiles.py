"""Tile sources and the tile index: one row per tile with its URI and footprint, built once per archive.

Sources:

- **XYZ / slippy-map trees** ``{z}/{x}/{y}.png|jpg|jpeg|webp`` (bounds from z/x/y, Web Mercator tiling).
  With a zoom and a region only the ``{z}/{x}/`` prefixes the region touches are listed.
- **Tile manifests**: CSV/Parquet with ``uri`` (or ``path``, relative to the manifest) and
  ``west, south, east, north`` (also accepted: ``minx, miny, maxx, maxy``) in EPSG:4326.
- **GeoJSON indexes**: one feature per tile, the footprint as geometry, ``uri``/``path`` as a property.
- **GeoTIFF/COG scenes** (one file or a folder): chipped into square windows of ``chip_size`` pixels with
  ``overlap``; windows are read one by one through rasterio, never the whole scene.

The index is a DataFrame with :data:`INDEX_COLUMNS`, sorted by ``tile_id``; it is pruned to the region
before any tile's bytes are read.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from landslide import storage
from landslide.errors import ConfigError, DataError, ImageError, StorageError
from landslide.data.images import decode_image

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["tile_id", "uri", "west", "south", "east", "north", "window"]
"""``window`` is ``"col_off,row_off,width,height"`` for GeoTIFF windows and empty for image files."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
_XYZ = re.compile(r"(?:^|/)(\d+)/(\d+)/(\d+)\.(png|jpe?g|webp)$", re.IGNORECASE)


def detect_format(source: str) -> str:
    """The tile-source kind of ``source`` from its name (and, for folders, its contents)."""
    lower = source.lower().rstrip("/")
    if lower.endswith((".csv", ".parquet", ".pq")):
        return "manifest"
    if lower.endswith((".geojson", ".json")):
        return "geojson"
    if lower.endswith(GEOTIFF_SUFFIXES):
        return "geotiff"
    if not storage.exists(source):
        raise StorageError(f"{source}: not found")
    if not storage.isdir(source):
        raise ConfigError(f"tiles.source {source}: not a folder, manifest (.csv/.parquet), GeoJSON index or "
                          "GeoTIFF; set tiles.format if the name misleads")
    fs, path = storage.filesystem(source)
    try:
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except Exception as exc:
        raise StorageError(f"{source}: cannot list ({type(exc).__name__}: {exc})") from exc
    if any(n.lower().endswith(GEOTIFF_SUFFIXES) for n in names):
        return "geotiff"
    if any(n.isdigit() for n in names):
        return "xyz"
    raise ConfigError(f"tiles.source {source}: holds neither GeoTIFFs nor an XYZ tree ({{z}}/{{x}}/{{y}}.png); "
                      "set tiles.format or point to a tile manifest")


def _frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS) if isinstance(rows, list) else rows[INDEX_COLUMNS]
    df = df.astype({"tile_id": str, "uri": str, "window": str,
                    "west": float, "south": float, "east": float, "north": float})
    dupes = df["tile_id"].duplicated()
    if dupes.any():
        raise DataError(f"tile index: duplicate tile ids, e.g. {df['tile_id'][dupes].iloc[0]!r}")
    return df.sort_values("tile_id", kind="stable").reset_index(drop=True)


def xyz_index(root: str, zoom: int | None = None, bbox: tuple[float, float, float, float] | None = None
              ) -> pd.DataFrame:
    """Index an XYZ tree. With ``zoom`` and ``bbox`` only the x-columns that intersect the bbox are listed."""
    import mercantile

    root = root.rstrip("/")
    prefixes = [root]
    if zoom is not None:
        prefixes = [storage.join(root, str(zoom))]
        if bbox is not None:
            w, s, e, n = _clip_mercator(bbox)
            first, last = mercantile.tile(w, n, zoom), mercantile.tile(e - 1e-12, s + 1e-12, zoom)
            prefixes = [storage.join(root, str(zoom), str(x)) for x in range(first.x, last.x + 1)]
    files: list[str] = []
    for prefix in prefixes:
        if prefix != root and not storage.exists(prefix):
            continue
        files += storage.list_files(prefix, IMAGE_SUFFIXES)
    rows = []
    zooms = set()
    for uri in files:
        m = _XYZ.search(uri)
        if not m:
            continue
        z, x, y = (int(v) for v in m.groups()[:3])
        if y >= 2 ** z or x >= 2 ** z:
            log.warning("%s: not a valid tile address at zoom %d; skipped", uri, z)
            continue
        zooms.add(z)
        b = mercantile.bounds(x, y, z)
        rows.append({"tile_id": f"{z}/{x}/{y}", "uri": uri, "west": b.west, "south": b.south, "east": b.east,
                     "north": b.north, "window": ""})
    if len(zooms) > 1:
        raise ConfigError(f"tiles.source {root}: holds zoom levels {sorted(zooms)}; set tiles.zoom to one of them")
    if not rows:
        where = f" at zoom {zoom}" if zoom is not None else ""
        raise DataError(f"{root}: no {{z}}/{{x}}/{{y}}.png|jpg|webp tiles found{where}")
    return _frame(rows)


def _clip_mercator(bbox):
    w, s, e, n = bbox
    limit = 85.05112878
    return max(w, -180.0), max(s, -limit), min(e, 180.0), min(n, limit)


_BOUNDS_ALIASES = {"minx": "west", "miny": "south", "maxx": "east", "maxy": "north"}


def manifest_index(uri: str) -> pd.DataFrame:
    """Index from a CSV/Parquet tile manifest."""
    df = storage.read_table(uri, "tile manifest").rename(columns=_BOUNDS_ALIASES)
    if "uri" not in df.columns and "path" in df.columns:
        df["uri"] = [storage.resolve(str(p), storage.parent(uri)) for p in df["path"]]
    missing = [c for c in ("uri", "west", "south", "east", "north") if c not in df.columns]
    if missing:
        raise DataError(f"{uri}: tile manifest lacks column(s) {missing} (needs uri or path, and "
                        "west, south, east, north in EPSG:4326)")
    if "tile_id" not in df.columns:
        df["tile_id"] = df["uri"].astype(str)
    df["window"] = ""
    _check_bounds(df, uri)
    return _frame(df)


def geojson_index(uri: str) -> pd.DataFrame:
    """Index from a GeoJSON FeatureCollection: one feature per tile, footprint = the geometry's bounds."""
    from shapely.geometry import shape

    doc = storage.read_json(uri)
    if doc.get("type") != "FeatureCollection":
        raise DataError(f"{uri}: a GeoJSON tile index must be a FeatureCollection")
    rows = []
    for i, feature in enumerate(doc.get("features", [])):
        props = feature.get("properties") or {}
        target = props.get("uri") or props.get("path")
        if not target:
            raise DataError(f"{uri}: feature {i} has no 'uri' or 'path' property")
        try:
            w, s, e, n = shape(feature["geometry"]).bounds
        except Exception as exc:
            raise DataError(f"{uri}: feature {i} has an invalid geometry ({exc})") from None
        rows.append({"tile_id": str(props.get("tile_id", props.get("id", target))),
                     "uri": storage.resolve(str(target), storage.parent(uri)),
                     "west": w, "south": s, "east": e, "north": n, "window": ""})
    if not rows:
        raise DataError(f"{uri}: no features")
    df = pd.DataFrame(rows)
    _check_bounds(df, uri)
    return _frame(df)


def _check_bounds(df: pd.DataFrame, source: str) -> None:
    for col in ("west", "south", "east", "north"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    bad = (df[["west", "south", "east", "north"]].isna().any(axis=1) | (df["west"] >= df["east"])
           | (df["south"] >= df["north"]) | (df["west"] < -180) | (df["east"] > 180) | (df["south"] < -90)
           | (df["north"] > 90))
    if bad.any():
        row = df[bad].iloc[0]
        raise DataError(f"{source}: {int(bad.sum())} tile(s) with invalid EPSG:4326 bounds, e.g. {row['uri']}: "
                        f"{[row['west'], row['south'], row['east'], row['north']]}")


def open_raster(uri: str):
    """Open a GeoTIFF/COG for reading, locally or through fsspec (ranged reads, never a full download)."""
    import rasterio

    try:
        if storage.is_remote(uri):
            fs, path = storage.filesystem(uri)

            def opener(name: str, mode: str = "rb"):
                # ranged reads through a read-ahead buffer: no full download, no background prefetch tasks
                return fs.open(name, mode, cache_type="readahead")

            return rasterio.open(path, opener=opener)
        return rasterio.open(uri[len("file://"):] if uri.startswith("file://") else uri)
    except rasterio.errors.RasterioIOError as exc:
        if not storage.exists(uri):
            raise StorageError(f"{uri}: not found") from None
        raise ImageError(uri, f"not a readable GeoTIFF ({str(exc).splitlines()[0][:200]})") from None


def _window_starts(length: int, chip: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - chip, 0) + 1, stride))
    if starts[-1] + chip < length:  # cover the far edge (the last window is padded with nodata)
        starts.append(starts[-1] + stride)
    return starts


def geotiff_index(source: str, chip_size: int, overlap: float = 0.0) -> pd.DataFrame:
    """Index the windows of one GeoTIFF or of every GeoTIFF in a folder."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window
    from rasterio.windows import bounds as window_bounds

    scenes = [source] if source.lower().endswith(GEOTIFF_SUFFIXES) else storage.list_files(source, GEOTIFF_SUFFIXES)
    if not scenes:
        raise DataError(f"{source}: no GeoTIFF (.tif/.tiff) files")
    stride = max(1, int(round(chip_size * (1 - overlap))))
    rows = []
    for scene in scenes:
        with open_raster(scene) as ds:
            if ds.crs is None:
                raise DataError(f"{scene}: GeoTIFF has no CRS; cannot place its windows on the map")
            name = scene.rstrip("/").rsplit("/", 1)[-1]
            for row_off in _window_starts(ds.height, chip_size, stride):
                for col_off in _window_starts(ds.width, chip_size, stride):
                    win = Window(col_off, row_off, chip_size, chip_size)
                    b = transform_bounds(ds.crs, "EPSG:4326", *window_bounds(win, ds.transform))
                    rows.append({"tile_id": f"{name}:{row_off}:{col_off}", "uri": scene,
                                 "west": b[0], "south": b[1], "east": b[2], "north": b[3],
                                 "window": f"{col_off},{row_off},{chip_size},{chip_size}"})
    return _frame(rows)


def build_index(source: str, fmt: str = "auto", zoom: int | None = None, chip_size: int | None = None,
                overlap: float = 0.0, bbox: tuple[float, float, float, float] | None = None) -> pd.DataFrame:
    """Index any supported tile source (see the module docstring)."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "xyz":
        return xyz_index(source, zoom, bbox)
    if fmt == "manifest":
        return manifest_index(source)
    if fmt == "geojson":
        return geojson_index(source)
    if fmt == "geotiff":
        if not chip_size:
            raise ConfigError("tiles.chip_size is needed to chip GeoTIFF scenes")
        return geotiff_index(source, chip_size, overlap)
    raise ConfigError(f"tiles.format {fmt!r}: choose auto, xyz, manifest, geojson or geotiff")


def write_index(index: pd.DataFrame, uri: str) -> None:
    """Cache an index as Parquet."""
    storage.write_table(index, uri, "parquet")


def read_index(uri: str) -> pd.DataFrame:
    """Read a cached index, checking its columns."""
    df = storage.read_table(uri, "tile index (Parquet)")
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{uri}: not a tile index (lacks {missing}); rebuild it with `landslide tiles index`")
    return _frame(df)


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    values = band[valid]
    if values.size == 0:
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(values, [0.5, 99.5])
    scaled = np.zeros(band.shape) if hi <= lo else (band.astype(np.float64) - lo) / (hi - lo)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255 + 0.5).astype(np.uint8)


def read_window(uri: str, window: str) -> np.ndarray:
    """One GeoTIFF window as ``(H, W, 3)`` uint8 RGB: bands 1-3 (or band 1 as grey), padded with nodata
    (black) beyond the scene's edge. 8-bit data is used as is; other types are stretched between the 0.5th
    and 99.5th percentiles of the window. A window that is all nodata is an error ("no data")."""
    from rasterio.windows import Window

    col_off, row_off, width, height = (int(v) for v in window.split(","))
    try:
        with open_raster(uri) as ds:
            bands = [1, 2, 3] if ds.count >= 3 else [1]
            # read the part inside the scene and pad by hand: rasterio's boundless reads reopen the scene
            # through a VRT, which its Python-opener plugin (remote scenes) does not survive
            c0, r0 = max(col_off, 0), max(row_off, 0)
            c1, r1 = min(col_off + width, ds.width), min(row_off + height, ds.height)
            data = np.ma.masked_all((len(bands), height, width), dtype=ds.dtypes[0])
            if c1 > c0 and r1 > r0:
                part = ds.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
                data[:, r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = part
    except (ImageError, StorageError):
        raise
    except Exception as exc:  # rasterio/GDAL raise several types for corrupt blocks
        raise ImageError(uri, f"unreadable GeoTIFF window ({window}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    if not valid.any():
        raise ImageError(uri, f"no data (window {window} is all nodata)")
    filled = data.filled(0)
    if filled.dtype == np.uint8:
        rgb = np.moveaxis(filled, 0, -1)
    else:
        rgb = np.stack([_stretch(b, valid) for b in filled], axis=-1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    return np.ascontiguousarray(rgb)


def read_tile(uri: str, window: str = "", max_pixels: int = 64_000_000, max_bytes: int | None = None) -> np.ndarray:
    """A tile as ``(H, W, 3)`` uint8 RGB, or :class:`ImageError` / :class:`StorageError` naming the reason."""
    if window:
        return read_window(uri, window)
    data = storage.read_bytes(uri, max_bytes=max_bytes)
    return decode_image(data, uri, max_pixels=max_pixels)


__all__ = ["INDEX_COLUMNS", "build_index", "detect_format", "geotiff_index", "geojson_index", "manifest_index",
           "read_index", "read_tile", "write_index", "xyz_index"]
