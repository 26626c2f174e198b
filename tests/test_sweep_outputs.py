"""What a sweep writes, as a GIS user reads it (issue 18), each on a small generated raster: areas of unions,
indexes that record how they were built, ids in raster order, the probability raster, areas in the scene's
CRS, georeferenced Grad-CAM overlays and the map preview."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from rasterio.transform import from_bounds

from conftest import sweep_config, write_raster
from landslide import lonlat, storage
from landslide.config import SweepConfig, parse_config
from landslide.errors import ConfigError
from landslide.inventory import geo
from landslide.inventory.sweep import run_sweep
from landslide.inventory.tiles import build_index, index_record, read_index, write_index


def read_parquet(uri: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pandas()


@pytest.fixture(scope="module")
def geographic_scene(tmp_path_factory) -> tuple[str, tuple[float, float, float, float]]:
    """A 256 x 192 px RGB scene in EPSG:4326 near 30°N, 1e-5° pixels: window footprints are exact boxes."""
    bounds = (100.0, 30.0, 100.00256, 30.00192)
    data = np.random.default_rng(18).integers(1, 255, (3, 192, 256), dtype=np.uint8)
    path = tmp_path_factory.mktemp("geo") / "scene.tif"
    return write_raster(path, data, crs="EPSG:4326", transform=from_bounds(*bounds, 256, 192), photometric="RGB"), bounds


# ------------------------------------------------------------------------------------------------ areas
def test_swept_and_positive_areas_are_areas_of_unions(geographic_scene, trained_run, tmp_path):
    scene, bounds = geographic_scene
    out = str(tmp_path / "sweep")
    # 64-px windows at a 32-px stride: every pixel lies in up to four windows
    s = run_sweep(sweep_config(trained_run["model_dir"], scene, out, tiles={"chip_size": 64, "overlap": 0.5}))
    inv = read_parquet(storage.join(out, "inventory.parquet"))
    scene_km2 = float(lonlat.box_area_km2(*bounds))
    assert s["tiles_ok"] == len(inv) == 7 * 5 and s["positives"] == len(inv)  # threshold 0.01: all positive
    assert s["area_km2_swept"] == pytest.approx(scene_km2, abs=1e-6) == s["area_km2_positive"]  # 1 m²
    assert geo.tile_area_km2(inv) > 2.9 * scene_km2  # what the summary reported before: windows added up
    # geodesic (pyproj, WGS84) and the exact ellipsoidal zone formula agree for boxes
    assert lonlat.geometry_area_km2(shapely.box(*bounds)) == pytest.approx(scene_km2, rel=1e-7)
    # a sphere would be off by about 0.3% here: the areas are on the ellipsoid
    sphere = lonlat.EARTH_RADIUS_KM ** 2 * np.radians(bounds[2] - bounds[0]) * (
        np.sin(np.radians(bounds[3])) - np.sin(np.radians(bounds[1])))
    assert abs(sphere / scene_km2 - 1) > 1e-3
    areas = json.loads(storage.read_text(storage.join(out, "landslide_areas.geojson")))
    assert len(areas["features"]) == 1
    assert areas["features"][0]["properties"]["area_km2"] == pytest.approx(scene_km2, rel=1e-6)


# ------------------------------------------------------------------------------------------------ indexes
def test_geotiff_window_ids_sort_in_raster_order(tmp_path):
    wide = write_raster(tmp_path / "wide.tif", np.full((1, 70, 1100), 9, np.uint8))
    idx = build_index(wide, chip_size=64)
    assert idx["tile_id"].iloc[0] == "wide.tif:r000000:c000000" and idx["tile_id"].is_monotonic_increasing
    offsets = idx["window"].str.split(",", expand=True).astype(int)  # col_off, row_off, width, height
    assert list(zip(offsets[1], offsets[0])) == sorted(zip(offsets[1], offsets[0]))
    assert offsets[0].max() == 1088 and (offsets[1].unique() == [0, 64]).all()


def test_xyz_and_manifest_indexes_are_in_raster_order(tmp_path):
    import mercantile

    tiles = [(x, y) for y in (20, 21) for x in (8, 9, 10, 11)]
    for x, y in tiles:
        path = tmp_path / "xyz" / "6" / str(x) / f"{y}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")  # never decoded here
    idx = build_index(str(tmp_path / "xyz"), scheme="xyz")
    assert list(idx["tile_id"]) == [f"6/{x}/{y}" for x, y in tiles]  # rows from the north, then x: 9 before 10
    assert list(idx["north"]) == [mercantile.bounds(x, y, 6).north for x, y in tiles]
    rows = [{"tile_id": f"t{i}", "uri": f"t{i}.png", "west": i, "south": 0, "east": i + 1, "north": 1}
            for i in (10, 9, 100, 1)]
    pd.DataFrame(rows).to_csv(tmp_path / "tiles.csv", index=False)
    assert list(build_index(str(tmp_path / "tiles.csv"))["tile_id"]) == ["t1", "t9", "t10", "t100"]


def test_index_records_how_it_was_built_and_sweeps_check_it(geographic_scene, trained_run, tmp_path, caplog):
    scene, _ = geographic_scene
    index_uri = str(tmp_path / "scene_64.parquet")
    run = subprocess.run([sys.executable, "-m", "landslide.cli", "tiles", "index", scene, "--chip-size", "64",
                          "--out", index_uri], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Built with: format geotiff, chip_size 64, overlap 0" in run.stdout
    record = index_record(read_index(index_uri))
    assert (record.source, record.format, record.chip_size, record.overlap) == (scene, "geotiff", 64, 0.0)
    meta = json.loads(pq.read_schema(index_uri).metadata[b"landslide:tile_index"])
    assert meta["chip_size"] == 64 and meta["index_format"] == 1

    model = trained_run["model_dir"]
    # the case: an index built with overlap 0, a config asking chip 32 / overlap 0.5
    with pytest.raises(ConfigError) as err:
        run_sweep(sweep_config(model, scene, str(tmp_path / "a"),
                               tiles={"index": index_uri, "chip_size": 32, "overlap": 0.5}))
    assert "chip_size 64 (asked 32)" in str(err.value) and "overlap 0 (asked 0.5)" in str(err.value)
    with pytest.raises(ConfigError, match="source .* \\(asked .*other.tif\\)"):
        run_sweep(sweep_config(model, str(tmp_path / "other.tif"), str(tmp_path / "b"), tiles={"index": index_uri}))
    # a config that states nothing the index contradicts uses it as built
    s = run_sweep(sweep_config(model, scene, str(tmp_path / "c"), tiles={"index": index_uri}))
    assert s["tiles_in"] == 4 * 3
    assert json.loads(storage.read_text(str(tmp_path / "c" / "sweep.json")))["tiles"]["index_record"]["chip_size"] == 64

    # an index from before indexes recorded their settings: used, with a warning that it cannot be checked
    old = str(tmp_path / "old.parquet")
    read_index(index_uri).to_parquet(old, index=False)
    pq.write_table(pq.read_table(old).replace_schema_metadata({}), old)
    with caplog.at_level(logging.WARNING, logger="landslide.inventory.sweep"):
        s = run_sweep(sweep_config(model, scene, str(tmp_path / "d"), tiles={"index": old, "chip_size": 32}))
    assert s["tiles_in"] == 12 and "records no build settings" in caplog.text

    # the sweep's own cached index follows the config: asked otherwise, it is rebuilt (and then the output
    # folder, holding the first sweep, refuses to mix the two)
    out = str(tmp_path / "e")
    run_sweep(sweep_config(model, scene, out, tiles={"chip_size": 64}))
    with pytest.raises(ConfigError, match="holds another sweep"):
        run_sweep(sweep_config(model, scene, out, tiles={"chip_size": 64, "overlap": 0.5}))
    assert index_record(read_index(storage.join(out, "tiles_index.parquet"))).overlap == 0.5


def test_cached_xyz_index_is_rebuilt_for_a_wider_region(tmp_path):
    from landslide.config import RegionConfig
    from landslide.inventory.region import load_region
    from landslide.inventory.sweep import _index_mismatches

    for x in (8, 9, 10, 11):
        path = tmp_path / "xyz" / "6" / str(x) / "20.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
    narrow = (-129.0, 55.0, -124.0, 58.0)  # the columns of x = 9 only
    idx = build_index(str(tmp_path / "xyz"), zoom=6, bbox=narrow, scheme="xyz")
    assert list(idx["tile_id"]) == ["6/9/20"] and index_record(idx).bbox == narrow
    write_index(idx, str(tmp_path / "idx.parquet"))
    record = index_record(read_index(str(tmp_path / "idx.parquet")))
    cfg = parse_config({"model": "m", "tiles": {"source": str(tmp_path / "xyz")}, "output": "o"}, "t",
                       schema=SweepConfig)
    wide = load_region(RegionConfig(bbox=(-135.0, 55.0, -110.0, 58.0)))
    assert any("listed only within" in p for p in _index_mismatches(record, cfg, 64, False, wide))
    assert not _index_mismatches(record, cfg, 64, False, load_region(RegionConfig(bbox=(-128, 56, -126, 57))))


# ------------------------------------------------------------------------------------------------ maps
def test_probability_raster_scene_areas_cams_and_preview(trained_run, tmp_path):
    from PIL import Image
    from rasterio.transform import Affine

    data = np.random.default_rng(9).integers(1, 255, (3, 192, 256), dtype=np.uint8)
    data[:, :, 192:] = 0  # the right-hand 64 px are nodata
    scene = write_raster(tmp_path / "utm.tif", data, nodata=0, photometric="RGB")  # EPSG:32647, 0.5 m pixels
    out = str(tmp_path / "sweep")
    s = run_sweep(sweep_config(trained_run["model_dir"], scene, out, explain={"enabled": True},
                               tiles={"chip_size": 64, "overlap": 0.5}))
    inv = read_parquet(storage.join(out, "inventory.parquet")).set_index("tile_id")
    assert s["tiles_in"] == 35 and s["tiles_nodata"] == 5  # the windows starting at column 192
    p = inv["probability"]

    info = s["scenes"]["utm.tif"]
    assert info["crs"] == "EPSG:32647" and info["cell_px"] == 32
    with rasterio.open(storage.join(out, info["probability_raster"])) as ds:
        src = rasterio.open(scene)
        assert ds.crs == src.crs and ds.transform == src.transform * Affine.scale(32)
        assert (ds.width, ds.height) == (8, 6) and ds.nodata == -1
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        grid = ds.read(1)
    assert grid[0, 0] == pytest.approx(p["utm.tif:r000000:c000000"], abs=1e-6)  # one window covers it
    four = [f"utm.tif:r{r:06d}:c{c:06d}" for r in (0, 32) for c in (0, 32)]
    assert grid[1, 1] == pytest.approx(p[four].mean(), abs=1e-6)  # overlapping windows blended
    assert grid[0, 6] == pytest.approx(p["utm.tif:r000000:c000160"], abs=1e-6)  # the nodata window is not
    assert (grid[:, 7] == -1).all()  # only nodata windows there: nothing scored
    # areas in the scene's CRS: every scored window is positive (threshold 0.01); the data they cover,
    # clipped to the scene, is 224 x 192 px of 0.25 m²
    assert info["area_m2_swept"] == info["area_m2_positive"] == pytest.approx(224 * 192 * 0.25)
    areas = pq.read_table(storage.join(out, info["areas"]))
    geo_meta = json.loads(areas.schema.metadata[b"geo"])
    assert geo_meta["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32647}
    polygons = shapely.from_wkb(areas.column("geometry").to_pylist())
    left, bottom, _, top = src.bounds
    assert shapely.equals(shapely.union_all(polygons), shapely.box(left, bottom, left + 112, top))
    assert areas.column("area_m2").to_pylist() == pytest.approx([224 * 192 * 0.25])

    # Grad-CAM overlays drape where their window lies
    tile_id = "utm.tif:r000032:c000064"
    with rasterio.open(storage.join(out, inv.loc[tile_id, "cam"][:-4] + ".tif")) as cam:
        window = rasterio.windows.Window(64, 32, 64, 64)
        assert cam.crs == src.crs and cam.count == 3
        np.testing.assert_allclose(cam.bounds, rasterio.windows.bounds(window, src.transform), atol=1e-6)
    preview = Image.open(io.BytesIO(storage.read_bytes(storage.join(out, "preview.png"))))
    assert preview.size[0] > 400 and s["files"]["preview"] == "preview.png"


def test_xyz_cams_drape_in_web_mercator(trained_run, tmp_path):
    import mercantile

    from landslide.data.synthetic import generate_region

    region = generate_region(str(tmp_path / "region"), cols=2, rows=2, tile_size=64, seed=4, geotiff=False)
    out = str(tmp_path / "sweep")
    s = run_sweep(sweep_config(trained_run["model_dir"], region["xyz"], out, explain={"enabled": True}))
    assert s["positives"] == 4 and s["scenes"] == {}
    inv = read_parquet(storage.join(out, "inventory.parquet"))
    row = inv.iloc[0]
    z, x, y = (int(v) for v in row["tile_id"].split("/"))
    with rasterio.open(storage.join(out, row["cam"][:-4] + ".tif")) as cam:
        assert cam.crs.to_epsg() == 3857
        np.testing.assert_allclose(cam.bounds, mercantile.xy_bounds(x, y, z), atol=1e-3)


def test_growing_union_equals_the_union_of_every_tile_at_once():
    """The swept area's union, grown shard by shard (binary-counter merges, snap-rounded to 1e-9 degrees,
    collinear vertices dropped), is the union of all the tiles: for a grid of tiles whose shared edges were
    computed one by one, with a ragged last row, and for overlapping windows, in 37 batches of uneven size."""
    import shapely

    from landslide.inventory import geo

    rng = np.random.default_rng(3)
    step = 128 / 111_320
    n, side = 2_000, 47
    r, c = np.divmod(np.arange(n), side)
    grid = pd.DataFrame({"west": 10 + c * step, "south": 1 - (r + 1) * step, "east": 10 + (c + 1) * step,
                         "north": 1 - r * step})
    offsets = rng.random((300, 2)) * 0.01  # windows overlapping at random
    windows = pd.DataFrame({"west": 20 + offsets[:, 0], "south": offsets[:, 1], "east": 20 + offsets[:, 0] + 0.002,
                            "north": offsets[:, 1] + 0.002})
    for tiles in (grid, windows):
        union = geo.GrowingUnion()
        cuts = np.sort(rng.choice(np.arange(1, len(tiles)), size=36, replace=False))
        for part in np.split(np.arange(len(tiles)), cuts):
            union.add(tiles.iloc[part])
        grown, whole = union.result(), shapely.union_all(geo.tile_boxes(tiles))
        assert abs(grown.area - whole.area) < 1e-7 * whole.area  # snapped outline moves <= 1e-9 degrees
        assert shapely.symmetric_difference(grown, whole).area < 1e-7 * whole.area
    assert geo.GrowingUnion().result() is None
