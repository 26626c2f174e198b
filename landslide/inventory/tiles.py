"""Tile sources and the tile index: one row per tile with its URI and footprint, built once per archive.

Sources:

- **XYZ / slippy-map trees** ``{z}/{x}/{y}.png|jpg|jpeg|webp`` (bounds from z/x/y, Web Mercator tiling).
  With a zoom and a region only the ``{z}/{x}/`` prefixes the region touches are listed.
- **Tile manifests**: CSV/Parquet with ``uri`` (or ``path``, relative to the manifest) and
  ``west, south, east, north`` (also accepted: ``minx, miny, maxx, maxy``) in EPSG:4326.
- **GeoJSON indexes**: one feature per tile, the footprint as geometry, ``uri``/``path`` as a property.
- **GeoTIFF/COG scenes** (one file or a folder): chipped into square windows of ``chip_size`` pixels with
  ``overlap``; windows are read one by one through rasterio, never the whole scene.

The index is a DataFrame with :data:`INDEX_COLUMNS` in raster order (:func:`index_order`); it is pruned to
the region before any tile's bytes are read. Written as Parquet (:func:`write_index`) it records how it was
built (:class:`IndexRecord`: source, format, scheme, zoom, chip size, overlap, bands), so a sweep can tell an
index that does not match its configuration.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, fields
from typing import get_args

import numpy as np
import pandas as pd

from landslide import lonlat, storage
from landslide.config import TileFormat
from landslide.errors import ConfigError, DataError, ImageError, NoDataError, StorageError
from landslide.data.gsd import raster_gsd_m
from landslide.data.images import Decoded, decode
from landslide.data.rasters import band_plan, to_rgb

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["tile_id", "uri", "west", "south", "east", "north", "window"]
"""``window`` is ``"col_off,row_off,width,height"`` (GDAL/rasterio ``Window`` order, pixels) for GeoTIFF windows
and empty for image files. GeoTIFF window ids are ``scene.tif:r000128:c000256`` (row, then column offset,
labelled and zero-padded to one width per scene), so they sort as text in raster order."""

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
    digits = [n for n in names if n.isdigit()]
    if digits:  # {z}/{x}/{y}.png, or scenes in dated folders (2023/x.tif, 2023/01/x.tif): look two levels down
        folder = storage.join(source, digits[0])
        for _ in range(2):
            try:
                inner = [p.rsplit("/", 1)[-1] for p in fs.ls(storage.filesystem(folder)[1], detail=False)]
            except Exception:  # unlistable: keep the tree reading, which names the problem
                break
            if any(n.lower().endswith(GEOTIFF_SUFFIXES) for n in inner):
                return "geotiff"
            numbered = [n for n in inner if n.isdigit()]
            if not numbered:
                break
            folder = storage.join(folder, numbered[0])
        return "xyz"
    raise ConfigError(f"tiles.source {source}: holds neither GeoTIFFs nor an XYZ tree ({{z}}/{{x}}/{{y}}.png); "
                      "set tiles.format or point to a tile manifest")


_XYZ_ID = re.compile(r"^(\d+)/(\d+)/(\d+)$")


def _natural_key(text: str) -> tuple:
    """``tile_9`` before ``tile_10``: digit runs compare as numbers (the parts alternate text, number, ...)."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def index_order(df: pd.DataFrame) -> np.ndarray:
    """Positions that put index rows in raster order: XYZ/TMS tiles by zoom, then rows from the north, then
    columns from the west (whatever the scheme counts); GeoTIFF windows by scene, row, column (their ids sort
    so as text); other ids (manifests, GeoJSON) with digit runs compared as numbers."""
    ids = df["tile_id"].astype(str)
    xyz = ids.str.extract(_XYZ_ID.pattern)
    if len(df) and not xyz.isna().any(axis=None):
        return np.lexsort((df["west"].to_numpy(float), -df["north"].to_numpy(float), xyz[0].astype(int).to_numpy()))
    keys = [_natural_key(t) for t in ids]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def _frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS) if isinstance(rows, list) else rows[INDEX_COLUMNS]
    df = df.astype({"tile_id": str, "uri": str, "window": str,
                    "west": float, "south": float, "east": float, "north": float})
    dupes = df["tile_id"].duplicated()
    if dupes.any():
        raise DataError(f"tile index: duplicate tile ids, e.g. {df['tile_id'][dupes].iloc[0]!r}")
    return df.iloc[index_order(df)].reset_index(drop=True)


TILE_SCHEMES = ("auto", "xyz", "tms")
"""Row order of ``{z}/{x}/{y}`` trees: ``xyz`` counts rows from the north (slippy maps, OSM, Google),
``tms`` from the south (OSGeo TMS: gdal2tiles' default, MBTiles); ``auto`` is TMS where the tree holds a
``tilemapresource.xml`` (which gdal2tiles writes for TMS output) and XYZ otherwise, said in the log."""

TMS_MARKER = "tilemapresource.xml"


def tile_scheme(root: str, scheme: str = "auto") -> str:
    """The row order of an XYZ/TMS tree: ``scheme`` when given, else from its ``tilemapresource.xml``.

    Raises :class:`ConfigError` for a TMS tree in a tiling the index cannot place (geodetic or raster
    profiles) and for a scheme that is not one of :data:`TILE_SCHEMES`."""
    if scheme not in TILE_SCHEMES:
        raise ConfigError(f"tiles.scheme {scheme!r}: choose one of {', '.join(TILE_SCHEMES)}")
    marker = storage.join(root.rstrip("/"), TMS_MARKER)
    has_marker = storage.exists(marker)
    if has_marker:
        _check_tms_profile(marker)
    if scheme != "auto":
        if scheme == "xyz" and has_marker:
            log.warning("%s has a %s (TMS rows counted from the south) but tiles.scheme is xyz; reading rows "
                        "from the north as configured", root, TMS_MARKER)
        return scheme
    if has_marker:
        log.info("%s: %s found; reading the tree as TMS (rows counted from the south)", root, TMS_MARKER)
        return "tms"
    log.warning("%s: no %s; reading the tree as XYZ (rows counted from the north, the slippy-map convention). "
                "Set tiles.scheme: tms (or --scheme tms) if it was written as TMS (gdal2tiles without --xyz, "
                "MBTiles exports)", root, TMS_MARKER)
    return "xyz"


def _check_tms_profile(marker: str) -> None:
    import xml.etree.ElementTree as ET

    try:
        doc = ET.fromstring(storage.read_bytes(marker, max_bytes=1_000_000))
    except (ET.ParseError, StorageError) as exc:
        raise ConfigError(f"{marker}: not a readable TMS tilemapresource.xml ({exc}); fix or remove it, or set "
                          "tiles.scheme") from None
    srs = (doc.findtext("SRS") or "").strip().upper()
    profile = (doc.find("TileSets").get("profile", "") if doc.find("TileSets") is not None else "").lower()
    mercator = srs in ("EPSG:3857", "EPSG:900913", "OSGEO:41001", "") and profile in ("mercator", "global-mercator", "")
    if not mercator:
        raise ConfigError(f"{marker}: a TMS tree in {srs or '?'} (profile {profile or '?'}); only Web Mercator "
                          "tilings (EPSG:3857, gdal2tiles -p mercator) can be indexed: re-tile it with "
                          "gdal2tiles -p mercator, or index the source raster as a GeoTIFF")


def xyz_index(root: str, zoom: int | None = None, bbox=None, scheme: str = "auto") -> pd.DataFrame:
    """Index an XYZ or TMS tree. With ``zoom`` and ``bbox`` only the x-columns that the bbox touches are listed.

    ``bbox`` is a lon/lat box (``west > east`` across 180°) or a list of boxes that do not cross 180°; a box
    cut at 180° lists only the columns of its two parts. ``scheme`` is the row order (:func:`tile_scheme`).
    """
    import mercantile

    root = root.rstrip("/")
    scheme = tile_scheme(root, scheme)
    prefixes = [root]
    if zoom is not None:
        prefixes = [storage.join(root, str(zoom))]
        if bbox is not None:
            columns: set[int] = set()
            for part in _boxes(bbox):
                w, s, e, n = _clip_mercator(part)
                if w >= e or s >= n:
                    continue
                first, last = mercantile.tile(w, n, zoom), mercantile.tile(min(e, 180.0 - 1e-9) - 1e-12, s + 1e-12, zoom)
                columns.update(range(max(first.x, 0), min(last.x, 2 ** zoom - 1) + 1))
            prefixes = [storage.join(root, str(zoom), str(x)) for x in sorted(columns)]
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
        b = mercantile.bounds(x, (2 ** z - 1 - y) if scheme == "tms" else y, z)
        rows.append({"tile_id": f"{z}/{x}/{y}", "uri": uri, "west": b.west, "south": b.south, "east": b.east,
                     "north": b.north, "window": ""})
    if len(zooms) > 1:
        raise ConfigError(f"tiles.source {root}: holds zoom levels {sorted(zooms)}; set tiles.zoom to one of them")
    if not rows:
        where = f" at zoom {zoom}" if zoom is not None else ""
        raise DataError(f"{root}: no {{z}}/{{x}}/{{y}}.png|jpg|webp tiles found{where}")
    return _frame(rows)


def flip_rows(index: pd.DataFrame) -> pd.DataFrame | None:
    """An XYZ/TMS index with its rows read the other way round (north <-> south), or None for other indexes:
    a region that misses a tree but hits it flipped is a tree indexed with the wrong scheme."""
    ids = index["tile_id"].str.extract(_XYZ_ID.pattern)
    if index.empty or ids.isna().any(axis=None):
        return None
    import mercantile

    out = index.copy()
    z, x = ids[0].astype(int).to_numpy(), ids[1].astype(int).to_numpy()
    lat = (index["south"].to_numpy(float) + index["north"].to_numpy(float)) / 2
    lon = (index["west"].to_numpy(float) + index["east"].to_numpy(float)) / 2
    rows = [mercantile.tile(lo, la, int(zi)).y for lo, la, zi in zip(lon, lat, z)]  # the rows as placed now
    b = np.array([mercantile.bounds(int(xi), int(2 ** zi - 1 - r), int(zi)) for zi, xi, r in zip(z, x, rows)])
    out["west"], out["south"], out["east"], out["north"] = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return out


def _boxes(bbox) -> list[tuple[float, float, float, float]]:
    """A bbox (possibly crossing 180°) or a list of boxes -> boxes that do not cross 180°."""
    if len(bbox) == 4 and all(isinstance(v, (int, float, np.floating, np.integer)) for v in bbox):
        return lonlat.split_box(*(float(v) for v in bbox))
    return [tuple(float(v) for v in b) for b in bbox]


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
    """Index from a GeoJSON FeatureCollection: one feature per tile, footprint = the geometry's bounds (a
    geometry cut at 180°, or one whose ring jumps across it, gives a footprint with ``west > east``)."""
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
            geom = shape(feature["geometry"])
            if geom.geom_type in ("Polygon", "MultiPolygon"):
                geom = lonlat.fix_geometry(geom)
            w, s, e, n = lonlat.bounds([geom])
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
    """Refuse impossible lon/lat footprints. ``west > east`` is a footprint across 180° (RFC 7946) and is
    kept when it spans less than half the globe; wider ones are far likelier swapped columns."""
    for col in ("west", "south", "east", "north"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    span = lonlat.lon_span(df["west"], df["east"])
    bad = (df[["west", "south", "east", "north"]].isna().any(axis=1) | (df["west"] == df["east"])
           | ((df["west"] > df["east"]) & (span > 180)) | (df["south"] >= df["north"]) | (df["west"] < -180)
           | (df["east"] > 180) | (df["south"] < -90) | (df["north"] > 90))
    if bad.any():
        row = df[bad].iloc[0]
        raise DataError(f"{source}: {int(bad.sum())} tile(s) with invalid EPSG:4326 bounds, e.g. {row['uri']}: "
                        f"{[row['west'], row['south'], row['east'], row['north']]} (west, south, east, north "
                        "in degrees; west > east only for a tile across 180°)")


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


def geotiff_index(source: str, chip_size: int, overlap: float = 0.0, bands=None,
                  window_m: float | None = None) -> pd.DataFrame:
    """Index the windows of one GeoTIFF or of every GeoTIFF in a folder. Each scene's bands are checked here
    (:func:`~landslide.data.rasters.band_plan`), so a raster whose colours cannot be told is refused before
    any window is read. With ``window_m`` each scene's windows are ``window_m`` metres on a side, in pixels
    of that scene's own GSD (:func:`landslide.data.gsd.raster_gsd_m`; ConfigError below 16 px) instead of
    ``chip_size``."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window
    from rasterio.windows import bounds as window_bounds

    scenes = [source] if source.lower().endswith(GEOTIFF_SUFFIXES) else storage.list_files(source, GEOTIFF_SUFFIXES)
    if not scenes:
        raise DataError(f"{source}: no GeoTIFF (.tif/.tiff) files")
    rows = []
    for scene in scenes:
        with open_raster(scene) as ds:
            if ds.crs is None:
                raise DataError(f"{scene}: GeoTIFF has no CRS; cannot place its windows on the map")
            plan = band_plan(ds, bands, scene)
            log.info("%s: bands %s as %s (%s)", scene, list(plan.indexes), plan.kind, plan.source)
            if window_m:
                gsd = raster_gsd_m(ds.crs, ds.transform, ds.width, ds.height)
                if gsd is None:
                    raise DataError(f"{scene}: its transform gives no pixel size; cannot size windows in metres")
                chip_size = int(round(window_m / gsd))
                if chip_size < 16:
                    raise ConfigError(f"tiles.window_m {window_m:g}: {chip_size} px of {scene} (GSD {gsd:.3g} m/px); "
                                      "windows need at least 16 px")
                log.info("%s: GSD %.3g m/px: windows of %d px for %g m", scene, gsd, chip_size, window_m)
            stride = max(1, int(round(chip_size * (1 - overlap))))
            name = scene.rstrip("/").rsplit("/", 1)[-1]
            digits = max(6, len(str(max(ds.width, ds.height))))
            for row_off in _window_starts(ds.height, chip_size, stride):
                for col_off in _window_starts(ds.width, chip_size, stride):
                    win = Window(col_off, row_off, chip_size, chip_size)
                    b = _lonlat_bounds(transform_bounds(ds.crs, "EPSG:4326", *window_bounds(win, ds.transform)))
                    rows.append({"tile_id": f"{name}:r{row_off:0{digits}d}:c{col_off:0{digits}d}", "uri": scene,
                                 "west": b[0], "south": b[1], "east": b[2], "north": b[3],
                                 "window": f"{col_off},{row_off},{chip_size},{chip_size}"})
    return _frame(rows)


def _lonlat_bounds(b) -> tuple[float, float, float, float]:
    """GDAL's transformed bounds as a footprint: ``west > east`` across 180° (which GDAL already returns for
    projected scenes), and longitudes beyond ±180 (geographic rasters on 0..360) wrapped."""
    w, s, e, n = (float(v) for v in b)
    if w < -180 or e > 180:
        if e - w >= 360:
            return -180.0, s, 180.0, n
        w, e = float(lonlat.normalize_lon(w)), float(lonlat.normalize_lon(e))
    return w, s, e, n


INDEX_FORMAT = 1
INDEX_METADATA_KEY = b"landslide:tile_index"


@dataclass(frozen=True)
class IndexRecord:
    """How a tile index was built, stored in its Parquet metadata (``landslide:tile_index``). Values are as
    resolved, not as asked: ``format`` and ``scheme`` never ``auto``; fields that do not apply to the format
    are None (``zoom``/``scheme``/``bbox`` for XYZ trees, ``chip_size``/``overlap``/``bands`` for GeoTIFFs)."""

    source: str
    format: str
    scheme: str | None = None
    zoom: int | None = None
    bbox: tuple[float, float, float, float] | None = None
    """XYZ: the lon/lat box (``west > east`` across 180°) whose columns alone were listed; None: the whole tree."""
    chip_size: int | None = None
    overlap: float | None = None
    bands: tuple[int, ...] | None = None
    window_m: float | None = None
    """GeoTIFF: window side in metres (each scene's windows in its own pixels); ``chip_size`` is then None."""
    index_format: int = INDEX_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> "IndexRecord":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        raw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known}
        return cls(**raw)

    def describe(self) -> str:
        """``format geotiff, chip_size 128, overlap 0.25``: the settings that apply to its format."""
        names = [f.name for f in fields(self) if f.name not in ("source", "index_format")]
        return ", ".join(f"{n} {_show(getattr(self, n))}" for n in names if getattr(self, n) is not None)


def _show(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def same_source(a: str, b: str) -> bool:
    """Whether two spellings of a tile source name the same place (local paths compared absolute)."""
    import os

    def norm(u: str) -> str:
        u = u.rstrip("/")
        if storage.is_remote(u):
            return u
        return os.path.abspath(u[len("file://"):] if u.startswith("file://") else u)

    return norm(a) == norm(b)


@dataclass(frozen=True)
class IndexRequest:
    """What :func:`build_index` was asked: the settings every tile source may use (each uses its own)."""

    source: str
    zoom: int | None = None
    chip_size: int | None = None
    overlap: float = 0.0
    bbox: object = None
    scheme: str = "auto"
    bands: tuple[int, ...] | None = None
    window_m: float | None = None


def _xyz_source(req: IndexRequest) -> tuple[pd.DataFrame, IndexRecord]:
    scheme = tile_scheme(req.source.rstrip("/"), req.scheme)
    index = xyz_index(req.source, req.zoom, req.bbox, scheme)
    zoom = int(index["tile_id"].iloc[0].split("/", 1)[0])
    listed = _listed_box(req.bbox) if req.zoom is not None and req.bbox is not None else None
    return index, IndexRecord(req.source, "xyz", scheme=scheme, zoom=zoom, bbox=listed)


def _geotiff_source(req: IndexRequest) -> tuple[pd.DataFrame, IndexRecord]:
    if req.window_m:
        index = geotiff_index(req.source, 0, req.overlap, req.bands, window_m=float(req.window_m))
        return index, IndexRecord(req.source, "geotiff", overlap=float(req.overlap), bands=req.bands,
                                  window_m=float(req.window_m))
    if not req.chip_size:
        raise ConfigError("tiles.chip_size is needed to chip GeoTIFF scenes")
    index = geotiff_index(req.source, req.chip_size, req.overlap, req.bands)
    return index, IndexRecord(req.source, "geotiff", chip_size=int(req.chip_size), overlap=float(req.overlap),
                              bands=req.bands)


TILE_SOURCES = {
    "xyz": _xyz_source,
    "manifest": lambda req: (manifest_index(req.source), IndexRecord(req.source, "manifest")),
    "geojson": lambda req: (geojson_index(req.source), IndexRecord(req.source, "geojson")),
    "geotiff": _geotiff_source,
}
"""Tile source kinds (``tiles.format``) -> a function from an :class:`IndexRequest` to (index, record): a new
archive type is one entry here (and its name in :data:`landslide.config.TileFormat`)."""


def build_index(source: str, fmt: str = "auto", zoom: int | None = None, chip_size: int | None = None,
                overlap: float = 0.0, bbox=None, scheme: str = "auto", bands=None,
                window_m: float | None = None) -> pd.DataFrame:
    """Index any supported tile source (:data:`TILE_SOURCES`; see the module docstring). ``bbox`` (a lon/lat
    box, ``west > east`` across 180°, or a list of boxes) limits what an XYZ/TMS tree lists; ``scheme`` is its
    row order.

    The frame's ``attrs["index_record"]`` is its :class:`IndexRecord`, which :func:`write_index` stores."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt not in TILE_SOURCES:
        raise ConfigError(f"tiles.format {fmt!r}: choose one of {', '.join(get_args(TileFormat))}")
    request = IndexRequest(source, zoom, chip_size, overlap, bbox, scheme,
                           tuple(int(b) for b in bands) if bands else None, window_m)
    index, record = TILE_SOURCES[fmt](request)
    index.attrs["index_record"] = asdict(record)
    return index


def _listed_box(bbox) -> tuple[float, float, float, float]:
    if len(bbox) == 4 and all(isinstance(v, (int, float, np.floating, np.integer)) for v in bbox):
        return tuple(float(v) for v in bbox)
    return tuple(float(v) for v in lonlat.bounds(pd.DataFrame(_boxes(bbox), columns=["west", "south", "east",
                                                                                       "north"])))


def index_record(index: pd.DataFrame) -> IndexRecord | None:
    """The :class:`IndexRecord` (kept in ``attrs`` as a plain dict) of an index from :func:`build_index` or :func:`read_index` (None for an index
    written before indexes recorded how they were built)."""
    raw = index.attrs.get("index_record")
    return IndexRecord.from_json(json.dumps(raw)) if raw else None


def write_index(index: pd.DataFrame, uri: str) -> None:
    """Write an index as Parquet, with its :class:`IndexRecord` in the file's metadata."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    record = index_record(index)
    frame = index[INDEX_COLUMNS].copy()
    frame.attrs = {}  # the record goes into its own metadata key below, not pandas' attrs
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if record is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               INDEX_METADATA_KEY: record.to_json().encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(uri, buf.getvalue())


def read_index(uri: str) -> pd.DataFrame:
    """Read an index written by :func:`write_index` (or a CSV with :data:`INDEX_COLUMNS`), checking its
    columns; its :class:`IndexRecord`, if it has one, is in ``attrs["index_record"]``."""
    import io

    import pyarrow.parquet as pq

    record = None
    if uri.lower().endswith(".csv"):
        df = storage.read_table(uri, "tile index")
    else:
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        except StorageError:
            raise
        except Exception as exc:
            raise DataError(f"{uri}: not a readable tile index (Parquet) ({type(exc).__name__}: {exc})") from None
        df = table.to_pandas()
        raw = (table.schema.metadata or {}).get(INDEX_METADATA_KEY)
        if raw is not None:
            try:
                record = IndexRecord.from_json(raw)
            except (ValueError, TypeError) as exc:
                raise DataError(f"{uri}: its build record is unreadable ({exc}); rebuild it with `landslide "
                                "tiles index`") from None
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{uri}: not a tile index (lacks {missing}); rebuild it with `landslide tiles index`")
    df = _frame(df)
    df.attrs = {"index_record": asdict(record)} if record else {}
    return df


def read_window(uri: str, window: str, bands=None) -> Decoded:
    """One GeoTIFF window as :class:`~landslide.data.images.Decoded`: ``(H, W, 3)`` uint8 RGB from the bands
    :func:`~landslide.data.rasters.band_plan` chooses (``bands``: 1-based, else the colour interpretation),
    padded with nodata (black) beyond the scene's edge, and its valid-pixel mask (nodata value, alpha, mask
    band and non-finite values are nodata). A window that is all nodata is a :class:`NoDataError`."""
    try:
        with open_raster(uri) as ds:
            return read_window_from(ds, uri, window, band_plan(ds, bands, uri))
    except (ImageError, StorageError, ConfigError):
        raise
    except Exception as exc:  # rasterio/GDAL raise several types for corrupt blocks
        raise ImageError(uri, f"unreadable GeoTIFF window ({window}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def read_window_from(ds, uri: str, window: str, plan) -> Decoded:
    """:func:`read_window` on an already open dataset ``ds`` (of ``uri``) with its
    :func:`~landslide.data.rasters.band_plan`: for many windows of one scene, opened once."""
    from rasterio.windows import Window

    col_off, row_off, width, height = (int(v) for v in window.split(","))
    try:
        c0, r0 = max(col_off, 0), max(row_off, 0)
        c1, r1 = min(col_off + width, ds.width), min(row_off + height, ds.height)
        if (c0, r0, c1 - c0, r1 - r0) == (col_off, row_off, width, height):
            # inside the scene (most windows of a sweep): one read, masked only where the bands can have
            # invalid pixels (nodata, a mask band, alpha)
            data = ds.read(list(plan.indexes), window=Window(col_off, row_off, width, height),
                           masked=not plan.all_valid)
        else:
            # read the part inside the scene and pad by hand: rasterio's boundless reads reopen the scene
            # through a VRT, which its Python-opener plugin (remote scenes) does not survive
            data = np.ma.masked_all((len(plan.indexes), height, width), dtype=ds.dtypes[plan.indexes[0] - 1])
            if c1 > c0 and r1 > r0:
                part = ds.read(list(plan.indexes), window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
                data[:, r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = part
    except (ImageError, StorageError, ConfigError):
        raise
    except Exception as exc:  # rasterio/GDAL raise several types for corrupt blocks
        raise ImageError(uri, f"unreadable GeoTIFF window ({window}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    rgb, valid = to_rgb(data, plan)
    if not valid.any():
        raise NoDataError(uri, f"no data (window {window} is all nodata)")
    return Decoded(rgb, None if valid.all() else valid)


def load_tile(uri: str, window: str = "", max_pixels: int = 64_000_000, max_bytes: int | None = None,
              bands=None) -> Decoded:
    """A tile (GeoTIFF window or image file) as RGB plus its nodata mask, or :class:`ImageError` /
    :class:`StorageError` naming the reason."""
    if window:
        return read_window(uri, window, bands)
    data = storage.read_bytes(uri, max_bytes=max_bytes)
    return decode(data, uri, max_pixels=max_pixels)


def read_tile(uri: str, window: str = "", max_pixels: int = 64_000_000, max_bytes: int | None = None,
              bands=None) -> np.ndarray:
    """A tile as ``(H, W, 3)`` uint8 RGB (nodata black); see :func:`load_tile`."""
    return load_tile(uri, window, max_pixels, max_bytes, bands).rgb


__all__ = ["INDEX_COLUMNS", "TILE_SCHEMES", "IndexRecord", "build_index", "index_order", "index_record", "detect_format", "flip_rows", "geotiff_index",
           "geojson_index", "load_tile", "manifest_index", "read_index", "read_tile", "read_window",
           "read_window_from", "tile_scheme", "write_index", "xyz_index"]
