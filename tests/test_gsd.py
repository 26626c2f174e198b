"""Ground sampling distance: input GSD and images resampled to a model's GSD (landslide.data.gsd)."""

import numpy as np
import pytest

from landslide.data.gsd import input_gsd, resample_to_gsd


def _stripes(h, w):
    """Vertical stripes 4 px wide: their period in pixels shows the scale."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, (np.arange(w) // 4) % 2 == 1] = 255
    return img


def _period(row):
    edges = np.flatnonzero(np.diff((row > 127).astype(int)) != 0)
    return float(np.median(np.diff(edges))) * 2


def test_input_gsd_is_ground_per_model_pixel():
    assert input_gsd(0.5, 128, 128, 128) == 0.5
    assert input_gsd(0.8, 273, 273, 128) == pytest.approx(1.70625)
    assert input_gsd(1.0, 100, 400, 100) == pytest.approx(2.0)  # geometric mean of the axes


def test_a_larger_image_is_resampled_then_centre_cropped():
    img = _stripes(100, 100)  # 1 m/px, period 8 px = 8 m
    out = resample_to_gsd(img, 1.0, 0.5, 64)  # at 0.5 m/px the 8 m period is 16 px
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert _period(out[32, :, 0]) == pytest.approx(16, abs=1)


def test_a_smaller_image_is_mirrored_to_fill_the_window():
    img = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    out = resample_to_gsd(img, 1.0, 1.0, 32)  # same GSD, too small: reflected, the original in the centre
    assert out.shape == (32, 32, 3)
    centre = out[11:21, 11:21]  # 22 px of padding, 11 each side
    assert np.array_equal(centre, img)
    assert np.array_equal(out[10, 11:21], img[1])  # the row above the original mirrors its second row
    tiny = resample_to_gsd(np.full((3, 1, 3), 7, np.uint8), 1.0, 1.0, 16)  # 1-px side: repeated
    assert tiny.shape == (16, 16, 3) and (tiny == 7).all()
    coarse = resample_to_gsd(_stripes(64, 64), 0.5, 2.0, 64)  # 4x coarser: 16 px of content, mirrored
    assert coarse.shape == (64, 64, 3)


def test_bad_gsd_is_refused():
    with pytest.raises(ValueError, match="GSD must be positive"):
        resample_to_gsd(_stripes(8, 8), 0.0, 1.0, 8)


def test_raster_gsd_in_any_crs():
    from affine import Affine
    from rasterio.crs import CRS

    from landslide.data.gsd import raster_gsd_m, xyz_gsd_m

    assert raster_gsd_m(CRS.from_epsg(32647), Affine(0.5, 0, 500000, 0, -0.5, 3300000), 100, 100) == 0.5
    feet = raster_gsd_m(CRS.from_epsg(2229), Affine(2.0, 0, 6e6, 0, -2.0, 2e6), 100, 100)  # US survey feet
    assert feet == pytest.approx(2 * 0.3048006096, rel=1e-9)
    # geographic: 1e-5 degree pixels at 60 N are ~0.56 m east-west and ~1.12 m north-south
    geo = raster_gsd_m(CRS.from_epsg(4326), Affine(1e-5, 0, 10.0, 0, -1e-5, 60.0005), 100, 100)
    assert geo == pytest.approx(np.sqrt(0.5583 * 1.1166), rel=2e-3)
    assert raster_gsd_m(None, Affine.identity(), 1, 1) is None
    # Web Mercator (XYZ tiles): ground size, not the nominal metres that grow as 1/cos(latitude)
    import mercantile

    for lat in (0.0, 60.0):
        box = mercantile.xy_bounds(mercantile.tile(105.0, lat, 16))
        px = (box.right - box.left) / 256
        gsd = raster_gsd_m(CRS.from_epsg(3857), Affine(px, 0, box.left, 0, -px, box.top), 256, 256)
        assert gsd == pytest.approx(xyz_gsd_m(16, lat), rel=0.005)


def test_xyz_gsd_follows_zoom_and_latitude():
    from landslide.data.gsd import xyz_gsd_m

    assert xyz_gsd_m(0, 0.0) == pytest.approx(156543.034, rel=1e-7)
    assert xyz_gsd_m(17, 60.0) == pytest.approx(156543.034 / 2 ** 17 / 2, rel=1e-6)
    assert xyz_gsd_m(17, 0.0, tile_px=512) == pytest.approx(xyz_gsd_m(18, 0.0))


def test_geotiff_sweep_windows_in_metres_and_matched_to_the_model(trained_run, tmp_path):
    import json
    import shutil

    from conftest import sweep_config, write_raster

    from landslide.errors import ConfigError
    from landslide.inventory.sweep import run_sweep, summary_lines

    rng = np.random.default_rng(0)
    scene = write_raster(tmp_path / "scene.tif", rng.integers(0, 255, (3, 200, 200), dtype=np.uint8))  # 0.5 m
    out = tmp_path / "m"
    done = run_sweep(sweep_config(trained_run["model_dir"], scene, str(out), tiles={"window_m": 40.0}))
    inv = pd_read(out / "inventory.parquet")
    assert {w.split(",")[2] for w in inv["window"]} == {"80"}  # 40 m at 0.5 m/px
    assert done["gsd"]["window_m"] == 40.0
    # the model records no GSD: said once, in the summary too
    plain = run_sweep(sweep_config(trained_run["model_dir"], scene, str(tmp_path / "p")))
    assert "does not record the GSD" in plain["gsd"]["note"] and "GSD: " in summary_lines(plain, "x")
    with pytest.raises(ConfigError, match="tiles.match_gsd: model .* does not record the GSD"):
        run_sweep(sweep_config(trained_run["model_dir"], scene, str(tmp_path / "x"), tiles={"match_gsd": True}))
    with pytest.raises(ConfigError, match="chip_size and window_m both size the windows"):
        sweep_config(trained_run["model_dir"], scene, str(tmp_path / "y"), tiles={"chip_size": 64, "window_m": 9})
    with pytest.raises(ConfigError, match=r"tiles.window_m 4: 8 px of .*windows need at least 16 px"):
        run_sweep(sweep_config(trained_run["model_dir"], scene, str(tmp_path / "z"), tiles={"window_m": 4.0}))
    with pytest.raises(ConfigError, match="window_m"):
        sweep_config(trained_run["model_dir"], scene, str(tmp_path / "w"), tiles={"window_m": float("inf")})

    # a model trained at 1 m per input pixel (32 px): windows of 32 m = 64 px of this 0.5 m scene
    model = tmp_path / "gsd_model"
    shutil.copytree(trained_run["model_dir"], model)
    card = json.loads((model / "model_card.json").read_text())
    card["input_gsd"] = {"median_m": 1.0, "p10_m": 1.0, "p90_m": 1.0, "chips": 1, "input_size": card["input_size"]}
    (model / "model_card.json").write_text(json.dumps(card))
    matched = run_sweep(sweep_config(str(model), scene, str(tmp_path / "g"), tiles={"match_gsd": True}))
    size = card["input_size"]
    assert matched["gsd"] == {"window_m": float(size), "note": None}
    assert {w.split(",")[2] for w in pd_read(tmp_path / "g" / "inventory.parquet")["window"]} == {str(2 * size)}
    # fixed windows of the model's input size reach it at 0.5 m/px, half its GSD: said, with the remedy
    fixed = run_sweep(sweep_config(str(model), scene, str(tmp_path / "f")))
    assert "0.50 x the 1 m/px it was trained at; tiles.match_gsd: true" in fixed["gsd"]["note"]
    metres = run_sweep(sweep_config(str(model), scene, str(tmp_path / "wm"), tiles={"window_m": 80.0}))
    assert "windows of 80 m reach the model at" in metres["gsd"]["note"]


def pd_read(path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def test_window_sizes_in_metres_are_for_geotiffs_only(trained_run, tmp_path):
    from conftest import sweep_config

    from landslide.data.synthetic import generate_region
    from landslide.errors import ConfigError
    from landslide.inventory.sweep import run_sweep

    region = generate_region(str(tmp_path / "r"), cols=2, rows=1, tile_size=32, seed=1, geotiff=False)
    with pytest.raises(ConfigError, match=r"tiles.window_m sizes GeoTIFF windows; .* is a xyz source.*zoom"):
        run_sweep(sweep_config(trained_run["model_dir"], region["xyz"], str(tmp_path / "o"), tiles={"window_m": 40.0}))


def test_xyz_sweeps_say_which_zoom_matches_the_model():
    import pandas as pd

    from landslide.inventory.sweep import gsd_note
    from landslide.inventory.tiles import IndexRecord

    index = pd.DataFrame({"south": [59.99], "north": [60.01]})
    model = {"name": "m", "input_size": 128, "input_gsd_m": 0.5}
    # zoom 17 at 60 N: 0.597 m/px in a 256-px tile, 1.19 m/px once resized to 128 px
    note = gsd_note(index, IndexRecord("t", "xyz", scheme="xyz", zoom=17), model)
    assert "zoom 17 (latitude 60.00) reach the model at 1.19 m/px, 2.39 x" in note and "zoom 18 is closer" in note
    assert gsd_note(index, IndexRecord("t", "xyz", scheme="xyz", zoom=18), {**model, "input_gsd_m": 0.6}) is None
    assert gsd_note(index, IndexRecord("t", "manifest"), model) is None
