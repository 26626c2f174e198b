"""Geospatial inputs as real archives hold them (issue 17), each on a small generated input: the antimeridian,
TMS/XYZ tile schemes, what a raster's bands mean (colour interpretation, photometric, nodata, NaN), image
decoding at full depth and under fuzzing, and NASA catalog exports with the date layouts people have."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import mercantile
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.transform import from_bounds

from conftest import sweep_config, two_page_tiff_without_width, write_raster
from landslide import lonlat, storage
from landslide.config import RegionConfig, SweepConfig, parse_config
from landslide.data.images import decode, decode_image, encode_png
from landslide.errors import ConfigError, DataError, ImageError
from landslide.inventory import geo
from landslide.inventory.region import load_region
from landslide.inventory.sweep import run_sweep
from landslide.inventory.tiles import build_index, load_tile, read_tile

# The scene of issue 17: UTM zone 1N across 180°, 100 m pixels, swept in 2 x 2 windows of 558 px.
UTM1_BOUNDS = (365474.0, 7591951.0, 477094.0, 7696071.0)


def read_parquet(uri: str) -> tuple[pd.DataFrame, dict]:
    data = storage.read_bytes(uri)
    return pq.read_table(io.BytesIO(data)).to_pandas(), json.loads(pq.read_schema(io.BytesIO(data)).metadata[b"geo"])


def shifted_boxes(df: pd.DataFrame) -> np.ndarray:
    """Footprints in a 0..360 longitude frame (fine near 180°, where these tests live): an independent way to
    place them, to check the -180..180 code against."""
    w, e = df["west"].to_numpy() % 360, df["east"].to_numpy() % 360
    e = np.where(e <= w, e + 360, e)
    return shapely.box(w, df["south"].to_numpy(), e, df["north"].to_numpy())


# ------------------------------------------------------------------------------------------------ antimeridian
@pytest.fixture(scope="module")
def utm1_scene(tmp_path_factory) -> str:
    rng = np.random.default_rng(17)
    data = rng.integers(0, 255, (3, 1041, 1116), dtype=np.uint8)
    path = tmp_path_factory.mktemp("utm1") / "scene_utm1.tif"
    return write_raster(path, data, crs="EPSG:32601", transform=from_bounds(*UTM1_BOUNDS, 1116, 1041),
                        photometric="RGB")


def test_windows_across_180_have_true_footprints_and_areas(utm1_scene):
    index = build_index(utm1_scene, chip_size=558)
    assert len(index) == 4
    crossing = index[index["west"] > index["east"]]
    assert len(crossing) == 2 and (crossing["west"] > 179).all() and (crossing["east"] < -178).all()
    # area: the windows' footprints total about 13,165 km2 (not -1.66 million)
    assert geo.tile_area_km2(index) == pytest.approx(13165, rel=0.01)
    assert geo.tile_area_km2(crossing) > 0
    # geometries are cut at 180: a MultiPolygon whose parts lie within [-180, 180] and sum to the box's area
    shapes = geo.tile_boxes(index)
    for shape, (_, row) in zip(shapes, index.iterrows()):
        lo, _, hi, _ = shape.bounds
        assert -180 <= lo and hi <= 180
        if row["west"] > row["east"]:
            assert shape.geom_type == "MultiPolygon" and len(shape.geoms) == 2
        assert geo.area_km2(shape) == pytest.approx(
            float(lonlat.box_area_km2(row["west"], row["south"], row["east"], row["north"])), rel=1e-7)
    # the scene's extent crosses 180 (RFC 7946 bbox: west > east), about 2.86 degrees wide
    w, s, e, n = lonlat.bounds(index)
    assert w > e and lonlat.lon_span(w, e) == pytest.approx(2.86, abs=0.02)


def test_lonlat_extents_and_boxes():
    assert lonlat.extent([10, 20], [11, 25]) == (10, 25)
    assert lonlat.extent([179.5, -179.8], [-179.0, -179.5]) == (179.5, -179.0)  # one across, one beside
    assert lonlat.extent([170, -175], [175, -170]) == (170, -170)  # the short way round, across 180
    assert lonlat.extent([-170, 170], [-160, 175]) == (170, -160)  # 30 degrees across 180, not 345 around
    assert lonlat.extent([-10, 20], [10, 30]) == (-10, 30)
    assert lonlat.extent([-180], [180]) == (-180, 180) and lonlat.extent([0, 90, -90, 180], [90, 180, 0, -90]) == (-180, 180)
    assert lonlat.lon_span(179.5, -179.5) == pytest.approx(1.0)
    w, s, e, n = lonlat.box_around(10.0, 179.99, 10)
    assert w > e and lonlat.lon_span(w, e) == pytest.approx(10 / (lonlat.EARTH_RADIUS_KM * np.cos(np.radians(10)))
                                                            * 180 / np.pi, rel=1e-6)
    assert lonlat.box_around(89.99, 0.0, 10)[::2] == (-180.0, 180.0)  # near a pole: the whole cap
    assert lonlat.normalize_lon(190.0) == -170.0 and lonlat.normalize_lon(180.0) == 180.0


@pytest.mark.parametrize("bbox", [(-179.9, 68.5, -178.0, 69.2), (179.7, 68.5, 179.95, 69.2),
                                  (179.9, 68.95, -179.9, 69.0), (-177.6, 68.3, -177.0, 68.5)])
def test_regions_near_180_select_exactly_the_windows_that_cover_them(utm1_scene, bbox):
    index = build_index(utm1_scene, chip_size=558)
    picked = load_region(RegionConfig(bbox=bbox)).select(index)
    w, s, e, n = bbox
    region = shapely.box(w % 360, s, (e % 360) if e % 360 > w % 360 else e % 360 + 360, n)
    expected = set(index["tile_id"][shapely.area(shapely.intersection(shifted_boxes(index), region)) > 0])
    assert set(picked["tile_id"]) == expected and expected


def test_sweep_across_180_writes_rfc7946_outputs(utm1_scene, trained_run, tmp_path):
    out = str(tmp_path / "sweep")
    s = run_sweep(sweep_config(trained_run["model_dir"], utm1_scene, out, tiles={"chip_size": 558}))
    assert s["tiles_in"] == s["tiles_ok"] == 4 and s["positives"] == 4
    inv, meta = read_parquet(storage.join(out, "inventory.parquet"))
    # the windows' lon/lat footprints overlap (a UTM grid is turned against the meridians): the swept area is
    # their union, checked against the union placed on 0..360 longitudes, where nothing needs cutting
    independent = lonlat.geometry_area_km2(shapely.union_all(shifted_boxes(inv)))
    assert s["area_km2_swept"] == pytest.approx(independent, rel=1e-6) == s["area_km2_positive"]
    assert s["area_km2_swept"] < 0.99 * geo.tile_area_km2(inv)
    bbox = meta["columns"]["geometry"]["bbox"]
    assert bbox[0] > bbox[2] and "MultiPolygon" in meta["columns"]["geometry"]["geometry_types"]
    geoms = shapely.from_wkb(inv["geometry"])
    assert sorted(g.geom_type for g in geoms) == ["MultiPolygon", "MultiPolygon", "Polygon", "Polygon"]
    assert all(-180 <= g.bounds[0] and g.bounds[2] <= 180 for g in geoms)
    areas = json.loads(storage.read_text(storage.join(out, "landslide_areas.geojson")))
    assert areas["bbox"][0] > areas["bbox"][2]
    # RFC 7946 3.1.6 and 11.2: exteriors counter-clockwise, holes clockwise, coordinates to 1e-7 degrees
    tiles_fc = json.loads(storage.read_text(storage.join(out, "inventory.geojson")))
    for fc in (areas, tiles_fc):
        for feat in fc["features"]:
            shape = shapely.geometry.shape(feat["geometry"])
            for poly in getattr(shape, "geoms", [shape]):
                assert poly.exterior.is_ccw and not any(h.is_ccw for h in poly.interiors)
            flat = np.asarray([c for poly in getattr(shape, "geoms", [shape]) for c in poly.exterior.coords])
            np.testing.assert_array_equal(flat, np.round(flat, 7))
    # the four windows are one landslide area, cut at 180 into one MultiPolygon feature
    assert len(areas["features"]) == 1 and areas["features"][0]["geometry"]["type"] == "MultiPolygon"
    assert areas["features"][0]["properties"]["tiles"] == 4
    assert areas["features"][0]["properties"]["area_km2"] == pytest.approx(
        shapely.union_all(shifted_boxes(inv)).area / shifted_boxes(inv)[0].area
        * geo.tile_area_km2(inv.iloc[:1]), rel=0.05)
    # a region just west of 180 sweeps only the windows there
    west = run_sweep(sweep_config(trained_run["model_dir"], utm1_scene, str(tmp_path / "west"),
                                  tiles={"chip_size": 558}, region={"bbox": [179.7, 68.5, 179.95, 69.2]}))
    assert west["tiles_in"] == 2


def test_region_geometries_across_180(tmp_path):
    # a ring that jumps from 179 to -179 (as many tools write it) is cut, not read as spanning the globe
    ring = [[178.0, 10.0], [-178.0, 10.0], [-178.0, 12.0], [178.0, 12.0], [178.0, 10.0]]
    (tmp_path / "r.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    region = load_region(RegionConfig(geojson=str(tmp_path / "r.geojson")))
    assert region.geometry.geom_type == "MultiPolygon" and region.bbox == (178.0, 10.0, -178.0, 12.0)
    assert lonlat.geometry_area_km2(region.geometry) == pytest.approx(
        float(lonlat.box_area_km2(178, 10, -178, 12)), rel=1e-7)
    # 0..360 longitudes are wrapped and cut too
    (tmp_path / "e.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[178.0, 10.0], [182.0, 10.0], [182.0, 12.0], [178.0, 12.0], [178.0, 10.0]]]}))
    assert load_region(RegionConfig(geojson=str(tmp_path / "e.geojson"))).bbox == (178.0, 10.0, -178.0, 12.0)
    # tiles of a manifest index on both sides (and one across) are selected; far ones are not
    rows = [(179.0, 10.5, 179.5, 11.0), (-179.5, 10.5, -179.0, 11.0), (179.8, 11.0, -179.8, 11.5),
            (170.0, 10.5, 170.5, 11.0), (-170.0, 10.5, -169.5, 11.0)]
    frame = pd.DataFrame(rows, columns=["west", "south", "east", "north"])
    frame["uri"] = [f"t{i}.png" for i in range(len(rows))]
    frame.to_csv(tmp_path / "tiles.csv", index=False)
    index = build_index(str(tmp_path / "tiles.csv"))
    assert sorted(region.select(index)["uri"]) == ["t0.png", "t1.png", "t2.png"]
    # a swapped west/east (358 degrees wide) is refused, not read as a tile across 180
    frame.loc[0, ["west", "east"]] = [179.0, -179.0 + 360 - 359.5]
    frame.loc[3, ["west", "east"]] = [170.5, 170.0 - 10]
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="invalid EPSG:4326 bounds"):
        build_index(str(tmp_path / "bad.csv"))


def test_dissolve_and_catalog_across_180(tmp_path):
    tiles = pd.DataFrame({"west": [179.9, -180.0, 179.95], "south": [0.0, 0.0, 0.1], "east": [180.0, -179.9, -179.95],
                          "north": [0.1, 0.1, 0.2], "probability": [0.9, 0.8, 0.7]})
    areas = geo.dissolve(tiles)
    assert len(areas) == 1 and areas[0]["geometry"]["type"] == "MultiPolygon" and areas[0]["properties"]["tiles"] == 3
    from landslide.data.catalog import load_catalog, query, seed_regions

    csv = ("event_id,event_date,latitude,longitude,landslide_size\n"
           "1,2010-01-01,-16.5,179.9,small\n2,2010-01-02,-16.6,-179.99,large\n3,2010-01-03,-16.5,0.0,small\n")
    (tmp_path / "glc.csv").write_text(csv)
    cat = load_catalog(str(tmp_path / "glc.csv"))
    assert sorted(query(cat, bbox=(179.0, -17.0, -179.0, -16.0)).frame["event_id"]) == ["1", "2"]
    seeded = seed_regions(query(cat, sizes=["large"]), size_km=10)
    geom = shapely.geometry.shape(seeded["features"][0]["geometry"])
    assert geom.geom_type == "MultiPolygon" and seeded["features"][0]["properties"]["area_km2"] == pytest.approx(100, rel=0.01)
    # a seeded region near 180 selects the windows on both sides of it
    (tmp_path / "seed.geojson").write_text(json.dumps(seeded))
    region = load_region(RegionConfig(geojson=str(tmp_path / "seed.geojson")))
    assert region.bbox[0] > region.bbox[2]
    # GeoParquet export of the catalog: bbox across 180 for events on both sides
    from landslide.data.catalog import write

    write(query(cat, bbox=(179.0, -17.0, -179.0, -16.0)), str(tmp_path / "cat.parquet"))
    _, meta = read_parquet(str(tmp_path / "cat.parquet"))
    assert meta["columns"]["geometry"]["bbox"] == [179.9, -16.6, -179.99, -16.5]


def _tiny_tree(root, zoom: int, tiles: list[tuple[int, int]], scheme: str = "xyz", marker: str | None = None) -> None:
    rng = np.random.default_rng(zoom)
    for x, y in tiles:
        row = (2 ** zoom - 1 - y) if scheme == "tms" else y
        storage.write_bytes(storage.join(str(root), str(zoom), str(x), f"{row}.png"),
                            encode_png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)))
    if marker is not None:
        storage.write_text(storage.join(str(root), "tilemapresource.xml"), marker)


def test_xyz_listing_across_180_probes_only_the_columns_of_its_parts(tmp_path, monkeypatch):
    zoom = 17
    west_side = mercantile.tile(179.9995, 60.0005, zoom)
    east_side = mercantile.tile(-179.9995, 60.0005, zoom)
    _tiny_tree(tmp_path / "xyz", zoom, [(west_side.x, west_side.y), (east_side.x, east_side.y)])
    probed: list[str] = []
    real = storage.exists
    monkeypatch.setattr(storage, "exists", lambda uri: probed.append(uri) or real(uri))
    index = build_index(str(tmp_path / "xyz"), zoom=zoom, bbox=(179.999, 59.99, -179.999, 60.01), scheme="xyz")
    columns = [p for p in probed if p.rstrip("/").split("/")[-2:-1] == [str(zoom)]]
    assert len(index) == 2 and 0 < len(columns) <= 4, columns  # not 2**17 existence checks


# ------------------------------------------------------------------------------------------------ tile schemes
TMS_XML = """<?xml version="1.0" encoding="utf-8"?>
<TileMap version="1.0.0" tilemapservice="http://tms.osgeo.org/1.0.0">
  <Title>scene.tif</Title><SRS>EPSG:3857</SRS>
  <BoundingBox minx="31.07" miny="100.0" maxx="31.09" maxy="100.02"/>
  <Origin x="-20037508.34" y="-20037508.34"/>
  <TileFormat width="256" height="256" mime-type="image/png" extension="png"/>
  <TileSets profile="{profile}"><TileSet href="16" units-per-pixel="2.38" order="16"/></TileSets>
</TileMap>
"""


@pytest.fixture
def tms_tiles() -> list[tuple[int, int]]:
    """Zoom-16 tiles around 31.08 N, 100.01 E (the issue's place), as XYZ addresses."""
    return [(t.x, t.y) for t in mercantile.tiles(100.0, 31.07, 100.02, 31.09, 16)]


def test_gdal2tiles_tms_tree_is_read_with_rows_from_the_south(tmp_path, tms_tiles):
    _tiny_tree(tmp_path / "tms", 16, tms_tiles, "tms", TMS_XML.format(profile="mercator"))
    _tiny_tree(tmp_path / "xyz", 16, tms_tiles, "xyz")
    tms, xyz = build_index(str(tmp_path / "tms")), build_index(str(tmp_path / "xyz"), scheme="xyz")
    bounds = ["west", "south", "east", "north"]
    np.testing.assert_allclose(np.sort(tms[bounds].to_numpy(), 0), np.sort(xyz[bounds].to_numpy(), 0))
    assert tms["south"].min() > 31.0 and tms["north"].max() < 31.2  # northern hemisphere, not -31.09..-31.07
    # the same tree without its marker: scheme tms says so; auto reads it as XYZ (logged), and a region
    # that the tree covers then says which scheme would fit
    (tmp_path / "tms" / "tilemapresource.xml").unlink()
    forced = build_index(str(tmp_path / "tms"), scheme="tms")
    np.testing.assert_allclose(np.sort(forced[bounds].to_numpy(), 0), np.sort(xyz[bounds].to_numpy(), 0))
    assert build_index(str(tmp_path / "tms"))["north"].max() < 0
    # geodetic / raster TMS profiles cannot be placed on Web Mercator tiles: refused
    (tmp_path / "tms" / "tilemapresource.xml").write_text(TMS_XML.format(profile="geodetic").replace("3857", "4326"))
    with pytest.raises(ConfigError, match="Web Mercator"):
        build_index(str(tmp_path / "tms"))


def test_sweep_of_a_tms_tree_without_marker_names_the_scheme(tmp_path, tms_tiles, trained_run):
    _tiny_tree(tmp_path / "tms", 16, tms_tiles, "tms")
    cfg = sweep_config(trained_run["model_dir"], str(tmp_path / "tms"), str(tmp_path / "out"),
                       region={"bbox": [100.0, 31.07, 100.02, 31.09]})
    with pytest.raises(DataError, match="tiles.scheme: tms"):
        run_sweep(cfg)
    s = run_sweep(sweep_config(trained_run["model_dir"], str(tmp_path / "tms"), str(tmp_path / "out2"),
                               region={"bbox": [100.0, 31.07, 100.02, 31.09]}, tiles={"scheme": "tms"}))
    assert s["tiles_in"] == len(tms_tiles)


def test_tiles_index_cli_scheme_and_bbox(tmp_path, tms_tiles):
    _tiny_tree(tmp_path / "tms", 16, tms_tiles, "tms")
    out = tmp_path / "idx.parquet"
    run = subprocess.run([sys.executable, "-m", "landslide.cli", "tiles", "index", str(tmp_path / "tms"),
                          "--scheme", "tms", "--zoom", "16", "--bbox", "100.0", "31.07", "100.02", "31.09",
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "lat 31.0" in run.stdout and pd.read_parquet(out)["south"].min() > 31.0
    bad = subprocess.run([sys.executable, "-m", "landslide.cli", "tiles", "index", str(tmp_path / "tms"),
                          "--bbox", "100.0", "31.09", "100.02", "31.07", "--zoom", "16"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "south < north" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------------ bands
def _rgb_pattern(size: int = 64) -> np.ndarray:
    """(3, H, W) uint8: red rises left to right, green top to bottom, blue is constant."""
    ramp = np.linspace(10, 245, size).astype(np.uint8)
    return np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 90, np.uint8)])


def test_band_order_from_colour_interpretation_and_setting(tmp_path):
    from rasterio.enums import ColorInterp

    rgb = _rgb_pattern().astype(np.uint16) * 16  # 12-bit values in uint16
    nir = np.full(rgb.shape[1:], 4000, np.uint16)
    bgrn = np.stack([rgb[2], rgb[1], rgb[0], nir])
    tagged = write_raster(tmp_path / "bgrn.tif", bgrn)
    with rasterio.open(tagged, "r+") as ds:
        ds.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    got = read_tile(tagged, "0,0,64,64").astype(int)
    expected = _rgb_pattern().transpose(1, 2, 0).astype(int)
    # R, G, B come from bands 3, 2, 1 (stretched: same order of values, blue constant)
    assert np.corrcoef(got[..., 0].ravel(), expected[..., 0].ravel())[0, 1] > 0.99
    assert np.corrcoef(got[..., 1].ravel(), expected[..., 1].ravel())[0, 1] > 0.99
    # 4 bands without any colour interpretation: refused at indexing, with the setting that fixes it
    plain = write_raster(tmp_path / "plain.tif", bgrn)
    with pytest.raises(ConfigError, match=r"tiles.bands.*\[3, 2, 1\]"):
        build_index(plain, chip_size=64)
    assert len(build_index(plain, chip_size=64, bands=[3, 2, 1])) == 1
    np.testing.assert_array_equal(read_tile(plain, "0,0,64,64", bands=(3, 2, 1)), got)
    with pytest.raises(ConfigError, match="bands 1..4"):
        build_index(plain, chip_size=64, bands=[5, 2, 1])
    with pytest.raises(ConfigError, match="tiles.bands.*3 bands"):
        parse_config({"model": "m", "output": "o", "tiles": {"source": "s", "bands": [1, 2]}}, "t", schema=SweepConfig)


def test_photometric_interpretations_become_rgb_as_gis_shows_them(tmp_path):
    rgb = _rgb_pattern()
    hwc = rgb.transpose(1, 2, 0)
    gray = rgb[0]
    cases = {
        "rgb": (write_raster(tmp_path / "rgb.tif", rgb, photometric="RGB"), hwc, 0),
        "ycbcr_jpeg": (write_raster(tmp_path / "ycbcr.tif", rgb, photometric="YCBCR", compress="JPEG",
                                    jpeg_quality=95), hwc, 6),
        "minisblack": (write_raster(tmp_path / "gray.tif", gray[None], photometric="MINISBLACK"),
                       np.repeat(gray[..., None], 3, -1), 0),
        "miniswhite": (write_raster(tmp_path / "white.tif", (255 - gray)[None], photometric="MINISWHITE"),
                       np.repeat(gray[..., None], 3, -1), 0),
    }
    cmyk = np.stack([255 - rgb[0], 255 - rgb[1], 255 - rgb[2], np.zeros_like(rgb[0])])
    cases["cmyk"] = (write_raster(tmp_path / "cmyk.tif", cmyk, photometric="CMYK"), hwc, 1)
    palette_path = write_raster(tmp_path / "pal.tif", (np.arange(64 * 64).reshape(1, 64, 64) % 4).astype(np.uint8))
    colours = {0: (255, 0, 0, 255), 1: (0, 255, 0, 255), 2: (0, 0, 255, 255), 3: (255, 255, 0, 255)}
    with rasterio.open(palette_path, "r+") as ds:
        ds.write_colormap(1, colours)
    pal_expected = np.array([colours[i][:3] for i in range(4)], np.uint8)[np.arange(64 * 64).reshape(64, 64) % 4]
    cases["palette"] = (palette_path, pal_expected, 0)
    bits = (np.arange(64 * 64).reshape(1, 64, 64) % 2).astype(np.uint8)
    cases["1-bit"] = (write_raster(tmp_path / "bits.tif", bits, nbits=1),
                      np.repeat((bits[0] * 255)[..., None], 3, -1), 0)
    for name, (path, expected, tolerance) in cases.items():
        got = read_tile(path, "0,0,64,64").astype(int)
        assert np.abs(got - expected.astype(int)).mean() <= tolerance + 0.5, name
        # a TIFF chip (training, evaluate, the endpoint) decodes the same way
        chip = decode_image(open(path, "rb").read(), name).astype(int)
        assert np.abs(chip - got).max() <= 1, name


def test_nodata_nan_and_mostly_empty_windows(tmp_path, trained_run):
    rng = np.random.default_rng(3)
    refl = rng.uniform(0.02, 0.4, (3, 128, 128)).astype(np.float32)
    refl[:, 10, 20:29] = np.nan  # 9 NaN pixels, no nodata tag
    path = write_raster(tmp_path / "refl.tif", refl)
    tile = load_tile(path, "0,0,64,64")
    assert tile.nodata_fraction == pytest.approx(9 / 64 ** 2) and tile.rgb.mean() > 60
    assert (tile.rgb[10, 20:29] == 0).all() and not tile.valid[10, 20:29].any()
    # a scene whose collar is nodata (0): windows that are mostly collar are 'nodata', not scored
    scene = rng.integers(1, 255, (3, 128, 128), dtype=np.uint8)
    scene[:, :, 64:] = 0
    scene[:, :2, 64:66] = 7  # 4 pixels of data in the right-hand windows: 99.9% nodata
    collar = write_raster(tmp_path / "collar.tif", scene, nodata=0)
    out = str(tmp_path / "sweep")
    s = run_sweep(sweep_config(trained_run["model_dir"], collar, out, tiles={"chip_size": 64, "max_nodata": 0.5}))
    assert s["tiles_in"] == 4 and s["tiles_ok"] == 2 and s["tiles_nodata"] == 2 and s["tiles_failed"] == 0
    inv, _ = read_parquet(storage.join(out, "inventory.parquet"))
    empty = inv[inv["status"] == "nodata"]
    assert (empty["nodata_fraction"] > 0.99).all() and empty["probability"].isna().all()
    assert "tiles.max_nodata" in empty["reason"].iloc[0]
    assert s["area_km2_swept"] == pytest.approx(geo.tile_area_km2(inv[inv["status"] == "ok"]), abs=1e-6)
    assert s["area_km2_swept"] == pytest.approx(geo.tile_area_km2(inv) / 2, rel=0.01)


# ------------------------------------------------------------------------------------------------ decoding
def _png16(values: np.ndarray) -> bytes:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with mem.open(driver="PNG", width=values.shape[2], height=values.shape[1], count=values.shape[0],
                      dtype="uint16") as ds:
            ds.write(values)
        return mem.read()


def test_16bit_png_is_decoded_at_full_depth(tmp_path):
    rng = np.random.default_rng(12)
    values = rng.integers(0, 4081, (3, 48, 48)).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    got = decode_image(_png16(values), "twelve.png")
    assert got.mean() == pytest.approx((values / 4080 * 255).mean(), abs=6)  # not the high byte (mean ~8)
    assert np.corrcoef(got[..., 0].ravel(), values[0].ravel())[0, 1] > 0.99
    # 16-bit RGBA: transparent pixels are nodata
    alpha = np.full((1, 48, 48), 65535, np.uint16)
    alpha[0, :12] = 0
    decoded = decode(_png16(np.concatenate([values, alpha])), "rgba16.png")
    assert decoded.nodata_fraction == pytest.approx(0.25) and (decoded.rgb[:12] == 0).all()
    # preprocess writes a real image, not a black one
    src = tmp_path / "src"
    src.mkdir()
    (src / "twelve.png").write_bytes(_png16(values))
    (src / "two_pages.tif").write_bytes(two_page_tiff_without_width())
    (src / "broken.tif").write_bytes(two_page_tiff_without_width()[:60])
    from landslide.data.preprocess import PreprocessOptions, preprocess

    report = preprocess(str(src), str(tmp_path / "dst"), PreprocessOptions(max_side=32), workers=1, progress=False)
    assert report["written"] == 2 and report["failed"] == 1
    assert "broken.tif" in report["failures"][0]["source"] and report["failures"][0]["reason"]
    written = np.asarray(Image.open(tmp_path / "dst" / "twelve.jpg"))
    assert written.mean() > 80


def test_decoder_failures_are_image_errors_under_fuzzing():
    rng = np.random.default_rng(2026)
    base = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    samples = {}
    for fmt, kwargs in (("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {}), ("TIFF", {"compression": "tiff_deflate"}),
                        ("GIF", {}), ("BMP", {})):
        buf = io.BytesIO()
        Image.fromarray(base).save(buf, format=fmt, **kwargs)
        samples[fmt] = buf.getvalue()
    samples["PNG16"] = _png16(rng.integers(0, 65535, (3, 24, 24)).astype(np.uint16))
    samples["TIFF2"] = two_page_tiff_without_width()
    outcomes = {"decoded": 0, "refused": 0}
    for fmt, data in samples.items():
        variants = [data[:n] for n in np.unique(np.linspace(1, len(data) - 1, 12).astype(int))]
        for _ in range(16):
            flipped = bytearray(data)
            for pos in rng.integers(0, len(data), 3):
                flipped[pos] ^= 1 << int(rng.integers(0, 8))
            variants.append(bytes(flipped))
        for variant in variants:
            try:
                image = decode(variant, f"fuzz.{fmt.lower()}", max_pixels=1_000_000)
            except ImageError as exc:
                assert exc.reason and "fuzz" in str(exc)
                outcomes["refused"] += 1
                continue
            assert image.rgb.dtype == np.uint8 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3, fmt
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 50 and outcomes["decoded"] > 10


# ------------------------------------------------------------------------------------------------ catalog dates
GLC_HEADER = "event_id,event_date,event_title,latitude,longitude,landslide_category,landslide_size\n"


def test_catalog_dates_as_exports_write_them(tmp_path):
    from landslide.data.catalog import load_catalog

    portal = GLC_HEADER + ("1,08/01/2008 12:00:00 AM,a,30.1,100.2,landslide,small\n"
                           "2,08/01/2008 01:30:00 PM,b,30.2,100.3,mudslide,large\n"
                           "3,8/1/2008 0:00,c,30.3,100.4,landslide,medium\n"
                           "4,2008-08-01T05:00:00+05:00,d,30.4,100.5,landslide,small\n"
                           "5,2008-08-01T00:00:00.000Z,e,30.5,100.6,landslide,small\n")
    (tmp_path / "portal.csv").write_text(portal)
    cat = load_catalog(str(tmp_path / "portal.csv"))
    assert len(cat) == 5 and not cat.invalid
    dates = dict(zip(cat.frame["event_id"], cat.frame["event_date"]))
    assert str(dates["1"]) == "2008-08-01 00:00:00+00:00" and str(dates["2"]) == "2008-08-01 13:30:00+00:00"
    assert dates["3"] == dates["4"] == dates["5"] == dates["1"]
    # a copy re-saved with day-first dates (a European locale) is read day first, as a whole file
    (tmp_path / "dmy.csv").write_text(GLC_HEADER + "1,31/07/2008 00:00,a,30.1,100.2,landslide,small\n"
                                                   "2,01/08/2008 00:00,b,30.2,100.3,landslide,small\n")
    assert [str(d.date()) for d in load_catalog(str(tmp_path / "dmy.csv")).frame["event_date"]] == [
        "2008-07-31", "2008-08-01"]
    # a load that keeps nothing is an error naming the column and an example value (exit 2, one line)
    (tmp_path / "bad.csv").write_text(GLC_HEADER + "1,sometime,a,30.1,100.2,landslide,small\n"
                                                   "2,later,b,30.2,100.3,landslide,small\n")
    with pytest.raises(DataError, match=r"column 'event_date'.*'sometime'"):
        load_catalog(str(tmp_path / "bad.csv"))
    run = subprocess.run([sys.executable, "-m", "landslide.cli", "catalog", "load", str(tmp_path / "bad.csv"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "event_date" in run.stderr and "Traceback" not in run.stderr


def test_tiles_index_default_output_and_bad_paths(tmp_path):
    scene = write_raster(tmp_path / "scene.tif", np.full((3, 64, 64), 100, np.uint8), photometric="RGB")
    cli = [sys.executable, "-m", "landslide.cli", "tiles", "index"]
    run = subprocess.run([*cli, scene, "--chip-size", "32"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(pd.read_parquet(tmp_path / "scene.tiles_index.parquet")) == 4
    bad = subprocess.run([*cli, scene, "--chip-size", "32", "--out", str(tmp_path / "scene.tif" / "idx.parquet")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "is a file, not a folder" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "folder.parquet").mkdir()
    bad = subprocess.run([*cli, scene, "--chip-size", "32", "--out", str(tmp_path / "folder.parquet")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "it is a folder" in bad.stderr and "Traceback" not in bad.stderr
