"""NASA Global Landslide Catalog: loading (strict about what makes an event, lenient and loud about the rest),
queries, exports, the chip join and sweep seeding. Generated catalogs carry the malformed rows; the real export
from ../shared/data is used when present."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

from landslide.config import RegionConfig
from landslide.data import catalog as glc
from landslide.errors import DataError, StorageError
from landslide.inventory.region import load_region
from tests.conftest import SHARED_DATA
from tests.test_cli import _assert_clean_error, run_cli

REAL_GLC = SHARED_DATA / "nasa_glc" / "Global_Landslide_Catalog_Export.csv"
HEADER = ("source_name,source_link,event_id,event_date,event_time,location_description,location_accuracy,"
          "landslide_category,landslide_trigger,landslide_size,landslide_setting,fatality_count,injury_count,"
          "storm_name,event_import_id,country_name,country_code,admin_division_name,admin_division_population,"
          "gazeteer_closest_point,gazeteer_distance,submitted_date,created_date,last_edited_date,longitude,"
          "latitude")


def row(event_id, date="6/15/2014 0:00", lon="85.3", lat="27.7", size="medium", category="landslide",
        trigger="downpour", setting="above_road", accuracy="5km", fatalities="0", country="Nepal", code="NP",
        description="Kathmandu valley"):
    description = description.replace('"', '""')  # CSV quoting
    return (f'AGU,http://example.org/{event_id},{event_id},{date},,"{description}",{accuracy},{category},'
            f"{trigger},{size},{setting},{fatalities},,,{event_id},{country},{code},Bagmati,0,Kathmandu,1.2,"
            f"4/1/2014 0:00,11/20/2017 15:17,2/15/2018 15:51,{lon},{lat}")


@pytest.fixture
def messy_csv(tmp_path):
    """A GLC export with one problem per row; line numbers below are the file's (header = line 1)."""
    lines = [
        HEADER,
        row("1"),                                                   # 2 ok
        row("2", date="31/31/2014 0:00"),                           # 3 bad date
        row("3", lat="97.5"),                                       # 4 latitude out of range
        row("4", lon=""),                                           # 5 missing longitude
        row("5", lon="0", lat="0"),                                 # 6 null island
        row("1", size="large"),                                     # 7 duplicate id
        row(""),                                                    # 8 missing id
        row("8", category="Avalanche-ish"),                         # 9 unknown category -> warning
        row("9", fatalities="many"),                                # 10 bad count -> warning
        row("10", size="Very Large", description='Road cut, "km 12", slope'),  # 11 normalised, quotes
        row("11", size=""),                                         # 12 blank size -> unknown
        row("12", date="2016-08-01T10:30:00.000Z", lon="-122.66", lat="45.42", country="United States",
            code="US", accuracy="exact"),                           # 13 ISO date
        row("13", description="multi\nline"),                      # 14-15 quoted newline
        row("14", lon="abc"),                                       # 16 not a number
        row("15"),                                                  # 17 Windows-1252 text -> warning
    ]
    text = "\n".join(lines) + "\n"
    data = text.encode("utf-8").replace(b"Kathmandu valley\",5km,landslide,downpour,medium,above_road,0,,,15",
                                        "Junín\",5km,landslide,downpour,medium,above_road,0,,,15".encode("cp1252"))
    path = tmp_path / "glc.csv"
    path.write_bytes(data)
    return str(path)


def test_load_reports_every_excluded_and_repaired_row(messy_csv):
    cat = glc.load_catalog(messy_csv)
    invalid = {i["line"]: i["reason"] for i in cat.invalid}
    assert set(invalid) == {3, 4, 5, 6, 7, 8, 16}
    assert invalid[3].startswith("event_date: cannot parse '31/31/2014 0:00'")
    assert invalid[4] == "coordinates: out of range (latitude 97.5, longitude 85.3)"
    assert invalid[5].startswith("coordinates: not numbers")
    assert invalid[6].startswith("coordinates: exactly 0, 0")
    assert invalid[7] == "event_id: duplicate '1'"
    assert invalid[8] == "event_id: missing"
    assert invalid[16].startswith("coordinates: not numbers (latitude '27.7', longitude 'abc')")
    assert cat.rows_read == 15 and len(cat) == 8 and cat.rows_read == len(cat) + len(cat.invalid)

    warnings = {(w["line"], w["column"]): w["reason"] for w in cat.warnings}
    assert warnings[(9, "category")] == "category: 'Avalanche-ish' is not a GLC value; kept as 'unknown'"
    assert warnings[(10, "fatalities")] == "fatalities: 'many' is not a count; kept as missing"
    encoding = [w for w in cat.warnings if w["reason"].startswith("encoding")]
    assert len(encoding) == 1 and encoding[0]["line"] == 17

    f = cat.frame.set_index("event_id")
    assert f.loc["8", "category"] == "unknown" and pd.isna(f.loc["9", "fatalities"])
    assert f.loc["10", "size"] == "very_large"
    assert f.loc["10", "location_description"] == 'Road cut, "km 12", slope'
    assert f.loc["11", "size"] == "unknown"
    assert f.loc["12", "event_date"] == pd.Timestamp("2016-08-01T10:30:00", tz="UTC")
    assert f.loc["12", "accuracy_km"] == 0.0 and f.loc["1", "accuracy_km"] == 5.0
    assert f.loc["13", "location_description"] == "multi\nline"
    assert f.loc["15", "location_description"] == "Junín"
    assert list(f.loc[["1", "13", "15"], "line"]) == [2, 14, 17]

    report = cat.report()
    assert report["invalid_reasons"] == {"coordinates": 4, "event_date": 1, "event_id": 2}
    assert report["warning_reasons"] == {"category": 1, "fatalities": 1, "encoding": 1}


def test_newer_layout_with_titles_and_iso_dates(tmp_path):
    path = tmp_path / "glc_new.csv"
    path.write_text("event_id,event_date,event_title,event_description,landslide_size,latitude,longitude,"
                    "country_name\n"
                    '42,2019-03-01T00:00:00.000,Slide at X,"Heavy rain, road closed",Large,10.5,-75.1,Colombia\n')
    (event,) = glc.load_catalog(str(path)).frame.itertuples()
    assert (event.event_title, event.event_description, event.size) == ("Slide at X", "Heavy rain, road closed",
                                                                         "large")
    assert event.trigger == "unknown" and event.location_accuracy == "unknown" and np.isnan(event.accuracy_km)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"a,b,c\n1,2,3\n", "no column(s) for ['event_id', 'event_date', 'lat', 'lon']"),
    (b"event_id,event_date\n1,1/1/2010 0:00\n", "no column(s) for ['lat', 'lon']"),
])
def test_files_that_are_not_catalogs(tmp_path, content, message):
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)):
        glc.load_catalog(str(path))
    with pytest.raises(StorageError, match="not found|No such file"):
        glc.load_catalog(str(tmp_path / "missing.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(DataError, match="not a readable Parquet catalog"):
        glc.load_catalog(str(tmp_path / "bad.parquet"))


def test_queries(messy_csv, tmp_path):
    cat = glc.load_catalog(messy_csv)
    assert len(glc.query(cat, countries=["united states"])) == 1
    assert len(glc.query(cat, countries=["np"])) == 7
    assert len(glc.query(cat, bbox=(-130, 40, -120, 50))) == 1
    assert len(glc.query(cat, since="2014-06-15", until="2014-06-15")) == 7  # until includes its whole day
    assert len(glc.query(cat, since="2016-01-01")) == 1
    assert len(glc.query(cat, sizes=["Very Large", "unknown"])) == 2
    assert len(glc.query(cat, max_accuracy_km=1)) == 1
    assert len(glc.query(cat, triggers=["downpour"], categories=["landslide"])) == 7
    polygon = load_region(RegionConfig(bbox=(85, 27, 86, 28))).geometry
    assert len(glc.query(cat, polygon=polygon)) == 7
    with pytest.raises(DataError, match="size: unknown value"):
        glc.query(cat, sizes=["huge"])
    with pytest.raises(DataError, match="bbox"):
        glc.query(cat, bbox=(10, 1, 20, 0))
    # west > east crosses 180: everything but 5..10 E, here every event in the latitude band
    assert len(glc.query(cat, bbox=(10, 20, 5, 60))) == len(glc.query(cat, bbox=(-180, 20, 180, 60)))


def test_exports_round_trip(messy_csv, tmp_path):
    cat = glc.load_catalog(messy_csv)
    glc.write(cat, str(tmp_path / "c.parquet"))
    back = glc.load_catalog(str(tmp_path / "c.parquet"))
    pd.testing.assert_frame_equal(back.frame, cat.frame)
    geo = json.loads(pq.read_schema(tmp_path / "c.parquet").metadata[b"geo"])
    assert geo["columns"]["geometry"]["geometry_types"] == ["Point"]
    points = shapely.from_wkb(pq.read_table(tmp_path / "c.parquet", columns=["geometry"])["geometry"].to_pylist())
    assert [(p.x, p.y) for p in points] == list(zip(cat.frame["lon"], cat.frame["lat"]))

    glc.write(cat, str(tmp_path / "c.geojson"))
    doc = json.loads((tmp_path / "c.geojson").read_text())
    assert len(doc["features"]) == 8
    first = doc["features"][0]
    assert first["geometry"] == {"type": "Point", "coordinates": [85.3, 27.7]}
    assert first["properties"]["event_date"] == "2014-06-15T00:00:00+00:00"
    glc.write(cat, str(tmp_path / "c.csv"))
    assert len(pd.read_csv(tmp_path / "c.csv")) == 8
    with pytest.raises(DataError, match="unknown output format"):
        glc.write(cat, str(tmp_path / "c.xlsx"))


def test_join_chips_nearest_event_within_radius_and_days(messy_csv):
    cat = glc.load_catalog(messy_csv)  # events 1, 8-11, 13, 15 at (27.7, 85.3); 12 at Portland
    cat = glc.query(cat, countries=["US"])
    portland = cat.frame.iloc[0]
    north_1km = portland["lat"] + np.degrees(1.0 / glc.EARTH_RADIUS_KM)
    chips = pd.DataFrame({
        "uri": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
        "lat": [north_1km, north_1km, portland["lat"] + 1, None, north_1km],
        "lon": [portland["lon"]] * 5,
        "date": ["2016-08-03", "2016-12-01", "2016-08-01", "2016-08-01", None],
    })
    joined = glc.join_chips(chips, cat, radius_km=1.5)
    assert list(joined["glc_event_id"].fillna("-")) == ["12", "12", "-", "-", "12"]
    assert joined["glc_distance_km"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert joined["glc_size"].iloc[0] == "medium" and pd.isna(joined["glc_size"].iloc[2])
    assert len(joined) == len(chips) and list(joined.columns[:4]) == ["uri", "lat", "lon", "date"]

    dated = glc.join_chips(chips, cat, radius_km=1.5, days=30)
    assert list(dated["glc_event_id"].fillna("-")) == ["12", "-", "-", "-", "-"]
    assert dated["glc_days"].iloc[0] == pytest.approx(-(1 + 13.5 / 24), abs=1e-3)
    assert glc.join_chips(chips, cat, radius_km=0.9)["glc_event_id"].isna().all()
    with pytest.raises(DataError, match="'lat'"):
        glc.join_chips(chips.drop(columns=["lat"]), cat, radius_km=1)


def test_seeded_regions_are_sweepable(messy_csv, tmp_path):
    cat = glc.query(glc.load_catalog(messy_csv), countries=["US"])
    plain = glc.seed_regions(cat, size_km=2)
    (f,) = plain["features"]
    w, s, e, n = shapely.geometry.shape(f["geometry"]).bounds
    mid_lat = (s + n) / 2
    assert glc.great_circle_km(s, w, n, w) == pytest.approx(2.0, rel=1e-5)  # GeoJSON keeps 1e-7 degrees
    assert glc.great_circle_km(mid_lat, w, mid_lat, e) == pytest.approx(2.0, rel=1e-3)
    assert f["properties"]["area_km2"] == pytest.approx(4.0, rel=1e-2)
    padded = glc.seed_regions(glc.query(glc.load_catalog(messy_csv), countries=["NP"]), 2, pad_accuracy=True)
    assert {p["properties"]["side_km"] for p in padded["features"]} == {12.0}  # 2 km + 2 x 5 km accuracy

    path = tmp_path / "regions.geojson"
    path.write_text(json.dumps(plain))
    region = load_region(RegionConfig(geojson=str(path)))
    tiles = pd.DataFrame({"west": [w - 0.1, e + 0.1], "south": [s, s], "east": [w + 0.001, e + 0.2],
                          "north": [n, n]})
    assert len(region.select(tiles)) == 1


def test_catalog_cli(messy_csv, tmp_path):
    out = tmp_path / "glc"
    proc = run_cli("catalog", "load", messy_csv, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "8 events from 15 rows" in proc.stdout and "7 invalid row(s) excluded, 3 warning(s)" in proc.stdout
    assert "invalid: line 3: event_date: cannot parse" in proc.stdout
    report = json.loads((out / "load_report.json").read_text())
    assert len(report["invalid"]) == 7 and report["events"] == 8

    proc = run_cli("catalog", "query", str(out / "catalog.parquet"), "--country", "NP", "--size", "very_large",
                   "--out", str(tmp_path / "q.geojson"))
    assert proc.returncode == 0 and "1 of 8 events match" in proc.stdout, proc.stderr

    chips = tmp_path / "chips.csv"
    pd.DataFrame({"uri": ["a.jpg", "b.jpg"], "lat": [27.7, 0.5], "lon": [85.3, 0.5]}).to_csv(chips, index=False)
    proc = run_cli("catalog", "join", str(chips), str(out / "catalog.parquet"), "--radius-km", "2",
                   "--out", str(tmp_path / "tagged.csv"))
    assert proc.returncode == 0 and "1 of 2 chips" in proc.stdout, proc.stderr
    assert pd.read_csv(tmp_path / "tagged.csv")["glc_event_id"].notna().tolist() == [True, False]

    proc = run_cli("catalog", "seed", messy_csv, "--country", "US", "--size-km", "1",
                   "--out", str(tmp_path / "seed.geojson"))
    assert proc.returncode == 0 and "1 regions around 1 of 8 events" in proc.stdout, proc.stderr

    _assert_clean_error(run_cli("catalog", "query", messy_csv, "--size", "huge", "--out", str(tmp_path / "x.csv")),
                        "size: unknown value(s) ['huge']")
    _assert_clean_error(run_cli("catalog", "load", str(chips), "--out", str(tmp_path / "y")),
                        "not a Global Landslide Catalog export")


def test_catalog_in_gcs(messy_csv, gcs_emulator):
    import gcsfs

    _, bucket = gcs_emulator
    gcsfs.GCSFileSystem().put(messy_csv, f"{bucket}/glc/export.csv")
    cat = glc.load_catalog(f"gs://{bucket}/glc/export.csv")
    assert len(cat) == 8 and len(cat.invalid) == 7
    glc.write(cat, f"gs://{bucket}/glc/catalog.parquet")
    assert len(glc.load_catalog(f"gs://{bucket}/glc/catalog.parquet")) == 8


@pytest.mark.realdata
def test_real_nasa_export():
    if not REAL_GLC.is_file():
        pytest.skip(f"real data not present at {REAL_GLC}")
    cat = glc.load_catalog(str(REAL_GLC))
    report = cat.report()
    assert report["rows_read"] == 11032 and report["invalid_rows"] == 0 and len(cat) == 11032
    assert report["date_range"] == ["1988-11-07", "2017-09-28"]
    # 9 blank sizes join the 851 'unknown' ones (SOURCE.md); no value is outside the vocabulary.
    assert report["sizes"]["unknown"] == 860 and report["warnings"] == 0
    assert set(report["sizes"]) <= set(glc.VOCABULARY["size"])
    nepal = glc.query(cat, countries=["Nepal"], sizes=["large", "very_large", "catastrophic"])
    assert len(nepal) > 0 and (nepal.frame["country_code"] == "NP").all()
    regions = glc.seed_regions(nepal, 2)
    assert len(regions["features"]) == len(nepal)
