"""The NASA Global Landslide Catalog (GLC): load, normalise, query, export, join to chips, seed sweep regions.

The GLC is published as a CSV export (``Global_Landslide_Catalog_Export.csv``; newer exports add
``event_title`` / ``event_description`` and ISO dates). Loading is strict about what makes an event usable and
lenient about the rest, and never drops anything silently:

- **invalid rows** (excluded, each reported with its CSV line and reason): no event id, a duplicate event id,
  an unparseable or missing date, missing / non-numeric / out-of-range coordinates, or exactly (0, 0);
- **warnings** (row kept, reported with line and column): a category value outside the GLC vocabulary (kept
  as ``unknown``), a bad fatality / injury count (kept as missing), a line that is not valid UTF-8 (decoded as
  Windows-1252, which is what such exports nearly always are).

Normalised columns: ``event_id, event_date (UTC), event_title, event_description, location_description,
category, trigger, size, setting, fatalities, injuries, country, country_code, admin_division, lat, lon,
location_accuracy, accuracy_km, source_name, source_link``. Categorical values are lower-case snake_case and
blanks become ``unknown``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from landslide import lonlat, storage
from landslide.data.splits import sphere_xyz
from landslide.errors import DataError

EARTH_RADIUS_KM = lonlat.EARTH_RADIUS_KM

# The GLC's own vocabularies (NASA's GLC data dictionary); anything else becomes "unknown" with a warning.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "category": ("landslide", "mudslide", "rock_fall", "complex", "debris_flow", "other", "unknown",
                 "riverbank_collapse", "snow_avalanche", "translational_slide", "lahar", "earth_flow", "creep",
                 "topple"),
    "trigger": ("downpour", "rain", "unknown", "continuous_rain", "tropical_cyclone", "snowfall_snowmelt",
                "monsoon", "mining", "earthquake", "construction", "flooding", "no_apparent_trigger",
                "freeze_thaw", "other", "dam_embankment_collapse", "leaking_pipe", "volcano", "vibration"),
    "size": ("small", "medium", "large", "very_large", "catastrophic", "unknown"),
    "setting": ("unknown", "above_road", "natural_slope", "urban", "below_road", "mine", "above_river",
                "deforested_slope", "other", "retaining_wall", "bluff", "burned_area", "engineered_slope",
                "above_coast"),
    "location_accuracy": ("exact", "1km", "5km", "10km", "25km", "50km", "100km", "250km", "unknown"),
}
SIZE_ORDER = ("small", "medium", "large", "very_large", "catastrophic")

# Source column -> normalised column (both the classic export and newer NASA layouts).
_ALIASES = {
    "event_id": "event_id", "id": "event_id",
    "event_date": "event_date", "date": "event_date",
    "event_title": "event_title", "event_description": "event_description",
    "location_description": "location_description",
    "landslide_category": "category", "landslide_trigger": "trigger", "landslide_size": "size",
    "landslide_setting": "setting",
    "fatality_count": "fatalities", "injury_count": "injuries",
    "country_name": "country", "country_code": "country_code", "admin_division_name": "admin_division",
    "latitude": "lat", "longitude": "lon",
    "location_accuracy": "location_accuracy",
    "source_name": "source_name", "source_link": "source_link",
}
COLUMNS = ("event_id", "event_date", "event_title", "event_description", "location_description", "category",
           "trigger", "size", "setting", "fatalities", "injuries", "country", "country_code", "admin_division",
           "lat", "lon", "location_accuracy", "accuracy_km", "source_name", "source_link")
_TEXT = ("event_title", "event_description", "location_description", "country", "country_code",
         "admin_division", "source_name", "source_link")
REQUIRED = ("event_id", "event_date", "lat", "lon")
_DATE_FORMATS = (
    # the data portal's export and Excel re-saves of it (US month first; 12-hour clock with AM/PM)
    "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y",
    "%m/%d/%y %I:%M:%S %p", "%m/%d/%y %I:%M %p", "%m/%d/%y %H:%M:%S", "%m/%d/%y %H:%M", "%m/%d/%y",
    # re-saved with other tools
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y-%m-%d %I:%M:%S %p", "%d-%b-%Y %H:%M:%S", "%d-%b-%Y",
    "%d %b %Y", "%b %d, %Y", "%B %d, %Y",
)
"""Date layouts of GLC exports as people have them; ISO 8601 (with ``T`` or a space, fractions, ``Z`` or an
offset, which is converted to UTC) is read by :func:`datetime.fromisoformat`. Times without an offset are UTC,
as the GLC records them."""


@dataclass
class Catalog:
    """Normalised catalog events plus everything that was excluded or repaired on the way in."""

    frame: pd.DataFrame
    source: str
    rows_read: int = 0
    invalid: list[dict] = field(default_factory=list)
    """Excluded rows: {line, event_id, reason}."""
    warnings: list[dict] = field(default_factory=list)
    """Kept rows with a repaired cell: {line, event_id, column, value, reason}."""

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, mask) -> "Catalog":
        return Catalog(self.frame.loc[mask].reset_index(drop=True), self.source, self.rows_read, self.invalid,
                       self.warnings)

    def report(self, examples: int = 20) -> dict:
        """A JSON-able account of the load: counts, reasons, and the first ``examples`` rows of each kind."""
        frame = self.frame
        span = [str(frame["event_date"].min().date()), str(frame["event_date"].max().date())] if len(frame) else []
        return {"source": self.source, "rows_read": self.rows_read, "events": len(frame),
                "invalid_rows": len(self.invalid), "invalid_reasons": _reason_counts(self.invalid),
                "warnings": len(self.warnings), "warning_reasons": _reason_counts(self.warnings),
                "date_range": span,
                "sizes": {k: int(v) for k, v in frame["size"].value_counts().items()} if len(frame) else {},
                "invalid_examples": self.invalid[:examples], "warning_examples": self.warnings[:examples]}


# --- reading --------------------------------------------------------------------------------------------


def _decode(data: bytes, source: str, warnings: list[dict]) -> str:
    """UTF-8 text; a line that is not valid UTF-8 is decoded as Windows-1252 and reported."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            lines.append(raw.decode("cp1252", errors="replace"))
            warnings.append({"line": number, "event_id": None, "column": None, "value": None,
                             "reason": f"encoding: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); read as "
                                       "Windows-1252"})
    return "\n".join(lines)


def _snake(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")


def _day_first(values: list[str]) -> bool:
    """True when a file's slash dates are day first (``31/01/2008``, a re-save with a European locale): some
    first field exceeds 12 and no second field does. The GLC's own exports are month first."""
    firsts, seconds = [], []
    for value in values:
        m = re.match(r"\s*(\d{1,2})/(\d{1,2})/\d{2,4}", value)
        if m:
            firsts.append(int(m.group(1)))
            seconds.append(int(m.group(2)))
    return any(v > 12 for v in firsts) and not any(v > 12 for v in seconds)


def _parse_date(text: str, day_first: bool = False) -> pd.Timestamp | None:
    """A catalog date in UTC, or None when no known layout reads it (:data:`_DATE_FORMATS`, ISO 8601)."""
    text = " ".join(text.strip().split())
    if not text:
        return None
    parsed = None
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    iso = re.sub(r" ?(UTC|GMT)$", "+00:00", iso)
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        for fmt in _DATE_FORMATS:
            if day_first and fmt.startswith("%m/%d"):
                fmt = "%d/%m" + fmt[5:]
            try:
                parsed = datetime.strptime(text.upper() if "%p" in fmt else text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    stamp = pd.Timestamp(parsed)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def accuracy_km(value: str) -> float:
    """``5km`` -> 5.0, ``exact`` -> 0.0, ``unknown`` -> NaN."""
    if value == "exact":
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)km", value)
    return float(match.group(1)) if match else float("nan")


def read_glc_csv(uri: str) -> Catalog:
    """Read and normalise a GLC export CSV (local path or URI)."""
    warnings: list[dict] = []
    text = _decode(storage.read_bytes(uri), uri, warnings)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{uri}: empty file, expected a NASA Global Landslide Catalog CSV export") from None
    names = [_ALIASES.get(_snake(h), None) for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise DataError(f"{uri}: not a Global Landslide Catalog export: no column(s) for {missing} "
                        f"(found: {', '.join(h for h in header if h)[:300]})")
    where = {name: i for i, name in reversed(list(enumerate(names))) if name}

    records, start = [], reader.line_num + 1
    for record in reader:
        line, start = start, reader.line_num + 1
        if any(cell.strip() for cell in record):
            records.append((line, record))
    date_at = where["event_date"]
    day_first = _day_first([r[date_at] for _, r in records if len(r) > date_at])
    rows, invalid, seen = [], [], set()
    rows_read = 0
    for line, record in records:
        rows_read += 1
        if len(record) < len(header):
            record = record + [""] * (len(header) - len(record))
        cell = {name: record[i].strip() for name, i in where.items()}
        event_id = cell.get("event_id", "")
        parsed = _parse_required(cell, seen, day_first)
        if isinstance(parsed, str):
            invalid.append({"line": line, "event_id": event_id or None, "reason": parsed})
            continue
        seen.add(event_id)
        rows.append(_normalise(cell, *parsed, line, warnings))
    if rows_read and not rows:
        raise DataError(f"{uri}: none of its {rows_read} row(s) is a usable event; "
                        + _why_none(invalid, header, names))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "line"])
    frame = _typed(frame)
    return Catalog(frame, uri, rows_read, invalid, warnings)


def _reason_counts(items: list[dict]) -> dict[str, int]:
    """How many excluded rows or warnings per reason (the text before its first colon), commonest first."""
    out: dict[str, int] = {}
    for item in items:
        key = item["reason"].split(":")[0]
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _why_none(invalid: list[dict], header: list[str], names: list[str | None]) -> str:
    """The commonest reason rows were refused, with its column as the file names it and an example."""
    counts = _reason_counts(invalid)
    key = next(iter(counts))
    example = next(item for item in invalid if item["reason"].startswith(key))
    column = {"event_date": "event_date", "coordinates": "lat"}.get(key, key)
    source = next((h for h, n in zip(header, names) if n == column), key)
    return (f"{counts[key]} with {key} problems in column {source!r}, e.g. line {example['line']}: "
            f"{example['reason']}")


def _parse_required(cell: dict[str, str], seen: set[str], day_first: bool = False
                    ) -> str | tuple[pd.Timestamp, float, float]:
    """(event_date, lat, lon) of a usable row, or the reason it is not one."""
    event_id = cell.get("event_id", "")
    if not event_id:
        return "event_id: missing"
    if event_id in seen:
        return f"event_id: duplicate {event_id!r}"
    date = _parse_date(cell.get("event_date", ""), day_first)
    if date is None:
        return (f"event_date: cannot parse {cell.get('event_date', '')!r} (expected M/D/YYYY [h:mm[:ss] AM/PM] "
                "or ISO 8601)")
    lat, lon = _parse_float(cell.get("lat", "")), _parse_float(cell.get("lon", ""))
    if lat is None or lon is None:
        return f"coordinates: not numbers (latitude {cell.get('lat', '')!r}, longitude {cell.get('lon', '')!r})"
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return f"coordinates: out of range (latitude {lat}, longitude {lon})"
    if lat == 0 and lon == 0:
        return "coordinates: exactly 0, 0 (a missing location, not an event in the Gulf of Guinea)"
    return date, lat, lon


def _normalise(cell: dict[str, str], date: pd.Timestamp, lat: float, lon: float, line: int,
               warnings: list[dict]) -> dict:
    row = {c: cell.get(c) or None for c in _TEXT}
    row.update(event_id=cell["event_id"], event_date=date, lat=lat, lon=lon, line=line)
    for column, vocabulary in VOCABULARY.items():
        raw = cell.get(column, "")
        value = _snake(raw) if raw else "unknown"
        if value not in vocabulary:
            warnings.append({"line": line, "event_id": cell["event_id"], "column": column, "value": raw,
                             "reason": f"{column}: {raw!r} is not a GLC value; kept as 'unknown'"})
            value = "unknown"
        row[column] = value
    row["accuracy_km"] = accuracy_km(row["location_accuracy"])
    for column in ("fatalities", "injuries"):
        raw = cell.get(column, "")
        number = _parse_float(raw) if raw else None
        if raw and (number is None or number < 0 or number != int(number)):
            warnings.append({"line": line, "event_id": cell["event_id"], "column": column, "value": raw,
                             "reason": f"{column}: {raw!r} is not a count; kept as missing"})
            number = None
        row[column] = None if number is None else int(number)
    return row


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame["event_date"] = pd.to_datetime(frame["event_date"], utc=True)
    for column in ("fatalities", "injuries", "line"):
        frame[column] = frame[column].astype("Int64")
    for column in ("lat", "lon", "accuracy_km"):
        frame[column] = frame[column].astype(float)
    for column in ("event_id", *_TEXT, *VOCABULARY):
        frame[column] = frame[column].astype("string")
    return frame


def load_catalog(uri: str) -> Catalog:
    """A GLC export CSV, or a catalog this module wrote (Parquet / GeoParquet)."""
    if uri.lower().endswith((".parquet", ".pq")):
        data = storage.read_bytes(uri)
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:
            raise DataError(f"{uri}: not a readable Parquet catalog ({type(exc).__name__}: {exc})") from None
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"{uri}: not a catalog written by `landslide catalog load` (no columns {missing})")
        frame = _typed(frame.drop(columns=["geometry"], errors="ignore").reindex(columns=[*COLUMNS, "line"]))
        return Catalog(frame, uri, len(frame))
    return read_glc_csv(uri)


# --- queries -------------------------------------------------------------------------------------------


def _timestamp(value) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def query(catalog: Catalog, bbox: tuple[float, float, float, float] | None = None,
          polygon: shapely.Geometry | None = None, since=None, until=None, countries: list[str] | None = None,
          sizes: list[str] | None = None, triggers: list[str] | None = None,
          categories: list[str] | None = None, max_accuracy_km: float | None = None) -> Catalog:
    """Events matching every given filter. ``until`` is inclusive of its whole day when it has no time."""
    f = catalog.frame
    keep = pd.Series(True, index=f.index)
    if bbox is not None:
        w, s, e, n = bbox
        if not (-180 <= w <= 180 and -180 <= e <= 180 and w != e and -90 <= s < n <= 90):
            raise DataError(f"bbox {list(bbox)}: expected west,south,east,north in degrees (west > east crosses "
                            "the antimeridian)")
        keep &= lonlat.in_lon_interval(f["lon"].to_numpy(float), w, e) & f["lat"].between(s, n).to_numpy()
    if polygon is not None:
        shapely.prepare(polygon)
        keep &= np.asarray(shapely.covers(polygon, shapely.points(f["lon"].to_numpy(), f["lat"].to_numpy())))
    start, end = _timestamp(since), _timestamp(until)
    if start is not None:
        keep &= f["event_date"] >= start
    if end is not None:
        if isinstance(until, str) and len(until.strip()) <= 10:
            end = end + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        keep &= f["event_date"] <= end
    if countries:
        wanted = {c.strip().lower() for c in countries}
        keep &= f["country"].str.lower().isin(wanted).fillna(False) | \
            f["country_code"].str.lower().isin(wanted).fillna(False)
    for column, values in (("size", sizes), ("trigger", triggers), ("category", categories)):
        if values:
            wanted = {_snake(v) for v in values}
            unknown = sorted(wanted - set(VOCABULARY[column]))
            if unknown:
                raise DataError(f"{column}: unknown value(s) {unknown}; known: {', '.join(VOCABULARY[column])}")
            keep &= f[column].isin(wanted).fillna(False)
    if max_accuracy_km is not None:
        keep &= (f["accuracy_km"] <= max_accuracy_km).fillna(False)
    return catalog.subset(keep.to_numpy(bool))


# --- export --------------------------------------------------------------------------------------------


def _points_wkb(frame: pd.DataFrame) -> pa.Array:
    return pa.array(shapely.to_wkb(shapely.points(frame["lon"].to_numpy(), frame["lat"].to_numpy())), pa.binary())


def write_parquet(catalog: Catalog, uri: str) -> None:
    """GeoParquet 1.0 with point geometry (EPSG:4326 lon/lat): opens in QGIS, reloads with load_catalog."""
    from landslide.inventory.geo import geoparquet_schema

    frame = catalog.frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    bbox = None
    if len(frame):
        w, e = lonlat.extent(frame["lon"].to_numpy(float), frame["lon"].to_numpy(float))
        bbox = [w, float(frame["lat"].min()), e, float(frame["lat"].max())]
    table = table.append_column("geometry", _points_wkb(frame))
    schema = geoparquet_schema(table.schema.remove(table.schema.get_field_index("geometry")), bbox,
                               geometry_types=["Point"])
    buffer = io.BytesIO()
    pq.write_table(table.cast(schema), buffer)
    storage.write_bytes(uri, buffer.getvalue())


def to_geojson(catalog: Catalog) -> dict:
    """A FeatureCollection of event points with their normalised attributes."""
    from landslide.inventory.geo import feature, feature_collection

    frame = catalog.frame
    columns = [c for c in COLUMNS if c not in ("lat", "lon")]
    features = []
    for row in frame.itertuples(index=False):
        props = {c: getattr(row, c) for c in columns}
        props["event_date"] = props["event_date"].isoformat()
        props = {k: (None if v is pd.NA else v) for k, v in props.items()}
        features.append(feature(shapely.Point(row.lon, row.lat), props))
    return feature_collection(features)


def write(catalog: Catalog, uri: str) -> None:
    """By suffix: .parquet (GeoParquet), .geojson / .json, .csv."""
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        write_parquet(catalog, uri)
    elif lower.endswith((".geojson", ".json")):
        storage.write_json(uri, to_geojson(catalog))
    elif lower.endswith(".csv"):
        storage.write_text(uri, catalog.frame.to_csv(index=False))
    else:
        raise DataError(f"{uri}: unknown output format (use .parquet, .geojson or .csv)")


# --- join to chips -------------------------------------------------------------------------------------


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Haversine distance in km."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, float)) for v in (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


TAG_COLUMNS = ("event_id", "event_date", "category", "trigger", "size", "setting", "location_accuracy")


def join_chips(chips: pd.DataFrame, catalog: Catalog, radius_km: float, days: float | None = None,
               date_column: str = "date", prefix: str = "glc_") -> pd.DataFrame:
    """Attach to each chip the nearest catalog event within ``radius_km`` (and, when the chips carry a date
    in ``date_column`` and ``days`` is given, within ``days`` of it). Adds ``<prefix><tag>`` columns for
    ``TAG_COLUMNS`` plus ``<prefix>distance_km`` (and ``<prefix>days`` with dates); chips without a match get
    missing values, which is what most chips have.
    """
    if radius_km <= 0:
        raise DataError(f"radius_km must be > 0, got {radius_km}")
    for column in ("lat", "lon"):
        if column not in chips.columns:
            raise DataError(f"chips need '{column}' columns (degrees) to be joined to the catalog by location")
    from scipy.spatial import cKDTree

    out = chips.copy()
    n = len(out)
    events = catalog.frame.reset_index(drop=True)
    best = np.full(n, -1)
    best_km = np.full(n, np.nan)
    lat = pd.to_numeric(out["lat"], errors="coerce").to_numpy(float)
    lon = pd.to_numeric(out["lon"], errors="coerce").to_numpy(float)
    located = np.isfinite(lat) & np.isfinite(lon)
    use_dates = days is not None and date_column in out.columns
    chip_dates = pd.to_datetime(out[date_column], utc=True, errors="coerce") if use_dates else None
    if len(events) and located.any():
        tree = cKDTree(sphere_xyz(events["lat"].to_numpy(), events["lon"].to_numpy(), radius=1.0))
        chord = 2 * np.sin(radius_km / EARTH_RADIUS_KM / 2)
        idx = np.flatnonzero(located)
        candidates = tree.query_ball_point(sphere_xyz(lat[idx], lon[idx], radius=1.0), r=chord * (1 + 1e-9))
        for i, cands in zip(idx, candidates):
            if not cands:
                continue
            cands = np.asarray(cands)
            km = great_circle_km(lat[i], lon[i], events["lat"].to_numpy()[cands], events["lon"].to_numpy()[cands])
            ok = km <= radius_km
            if use_dates:
                if pd.isna(chip_dates.iloc[i]):
                    ok &= False
                else:
                    gap = (events["event_date"].iloc[cands] - chip_dates.iloc[i]).abs().dt.total_seconds()
                    ok &= gap.to_numpy() <= days * 86400
            if ok.any():
                j = np.flatnonzero(ok)[np.argmin(km[ok])]
                best[i], best_km[i] = cands[j], km[j]
    matched = best >= 0
    for tag in TAG_COLUMNS:
        values = pd.Series(pd.NA, index=out.index, dtype=events[tag].dtype if tag != "event_date"
                           else "datetime64[ns, UTC]")
        if matched.any():
            values.iloc[np.flatnonzero(matched)] = events[tag].iloc[best[matched]].to_numpy()
        out[prefix + tag] = values
    out[prefix + "distance_km"] = best_km
    if use_dates:
        delta = (out[prefix + "event_date"] - chip_dates).dt.total_seconds() / 86400
        out[prefix + "days"] = delta.round(3)
    return out


# --- sweep seeding -------------------------------------------------------------------------------------


def seed_regions(catalog: Catalog, size_km: float, pad_accuracy: bool = False) -> dict:
    """Square boxes of ``size_km`` (plus twice the location accuracy with ``pad_accuracy``) centred on each
    event, as a GeoJSON FeatureCollection a sweep config takes as ``region.geojson`` (the sweep unions them).
    Events whose location accuracy is unknown keep the plain size.
    """
    from landslide.inventory.geo import area_km2, feature, feature_collection

    if size_km <= 0:
        raise DataError(f"size_km must be > 0, got {size_km}")
    features = []
    for row in catalog.frame.itertuples(index=False):
        side = size_km
        if pad_accuracy and not math.isnan(row.accuracy_km):
            side += 2 * row.accuracy_km
        # a box near 180° wraps (a MultiPolygon cut there), near a pole it becomes the polar cap
        geom = lonlat.footprint(*lonlat.box_around(row.lat, row.lon, side))
        features.append(feature(geom, {"event_id": row.event_id, "event_date": row.event_date.isoformat(),
                                       "size": row.size, "trigger": row.trigger,
                                       "location_accuracy": row.location_accuracy, "side_km": round(side, 3),
                                       "area_km2": round(area_km2(geom), 3)}))
    return feature_collection(features)
