"""Regional sweeps in one process: tile indexes, region pruning, the shared Predictor, outputs, resumption."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

from landslide import storage
from landslide.config import SweepConfig, parse_config
from landslide.errors import ConfigError, DataError
from landslide.inference.predictor import Predictor
from landslide.inventory.region import load_region
from landslide.inventory.sweep import run_sweep
from landslide.inventory.tiles import build_index, read_tile


@pytest.fixture(scope="session")
def region(tmp_path_factory) -> dict:
    """A synthetic 4 x 3 region of 64-px tiles, as XYZ tiles and as one GeoTIFF."""
    from landslide.data.synthetic import generate_region

    return generate_region(str(tmp_path_factory.mktemp("region")), cols=4, rows=3, tile_size=64, seed=3)


@pytest.fixture(scope="session")
def model_dir(trained_run) -> str:
    return trained_run["model_dir"]


@pytest.fixture(scope="session")
def median_threshold(model_dir, region) -> float:
    """A threshold that makes about half the region positive (the tiny model is barely trained)."""
    predictor = Predictor(model_dir)
    index = build_index(region["xyz"])
    probs = predictor.predict(np.stack([predictor.prepare(read_tile(u)) for u in index["uri"]]))
    return float(np.clip(np.median(probs), 0.01, 0.99))


def sweep_cfg(model_dir: str, source: str, output: str, **extra) -> SweepConfig:
    raw = {"name": "t", "model": model_dir, "tiles": {"source": source}, "output": output, "batch_size": 4,
           "shard_size": 5, "read_threads": 2}
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(raw, "test", schema=SweepConfig)


def read_parquet(uri: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pandas()


# ------------------------------------------------------------------------------------------------ indexes
def test_xyz_and_geotiff_indexes_agree(region):
    xyz, tif = build_index(region["xyz"]), build_index(region["geotiff"], chip_size=64)
    assert len(xyz) == len(tif) == 12
    assert set(xyz["tile_id"]) == set(pd.read_csv(region["truth"])["tile_id"])
    assert tif["window"].str.match(r"^\d+,\d+,64,64$").all()
    bounds = ["west", "south", "east", "north"]
    np.testing.assert_allclose(np.sort(xyz[bounds].to_numpy(), 0), np.sort(tif[bounds].to_numpy(), 0), atol=1e-9)
    # the GeoTIFF window holds the same pixels as the XYZ tile (which is JPEG-compressed)
    row = tif[(tif["window"] == "64,0,64,64")].iloc[0]
    same = np.isclose(xyz["west"], row["west"], rtol=0, atol=1e-9) & np.isclose(xyz["north"], row["north"],
                                                                                   rtol=0, atol=1e-9)
    window = read_tile(row["uri"], row["window"]).astype(int)
    twin, other = read_tile(xyz[same].iloc[0]["uri"]), read_tile(xyz[~same].iloc[0]["uri"])
    assert np.abs(window - twin).mean() < 0.4 * np.abs(window - other).mean()


def test_geotiff_windows_overlap_and_pad(region):
    idx = build_index(region["geotiff"], chip_size=100, overlap=0.5)  # 256 x 192 px scene, stride 50
    cols = sorted({int(w.split(",")[0]) for w in idx["window"]})
    assert cols == [0, 50, 100, 150, 200]  # the last window runs past the edge and is padded
    edge = read_tile(region["geotiff"], "200,0,100,100")
    assert edge.shape == (100, 100, 3) and edge[:, 56:].max() == 0 and edge[:, :56].max() > 0


def test_xyz_listing_is_pruned_to_the_region(region):
    bbox = region["bbox"]
    narrow = (bbox[0], bbox[1], bbox[0] + (bbox[2] - bbox[0]) * 0.4, bbox[3])  # the first two tile columns
    idx = build_index(region["xyz"], zoom=region["zoom"], bbox=narrow)
    assert len(idx) == 6 and idx["tile_id"].str.split("/").str[1].nunique() == 2
    with pytest.raises(DataError, match="no .*tiles found at zoom 12"):
        build_index(region["xyz"], zoom=12)


def test_manifest_and_geojson_indexes(region, tmp_path):
    xyz = build_index(region["xyz"])
    frame = xyz.assign(path=[os.path.relpath(u, tmp_path) for u in xyz["uri"]]).drop(columns=["uri", "window"])
    frame = frame.rename(columns={"west": "minx", "south": "miny", "east": "maxx", "north": "maxy"})
    frame.to_csv(tmp_path / "tiles.csv", index=False)
    from_csv = build_index(str(tmp_path / "tiles.csv"))
    assert [os.path.normpath(u) for u in from_csv["uri"]] == list(xyz["uri"])  # relative to the manifest
    features = [{"type": "Feature", "properties": {"uri": u, "tile_id": t},
                 "geometry": shapely.geometry.mapping(shapely.box(w, s, e, n))}
                for t, u, w, s, e, n in xyz[["tile_id", "uri", "west", "south", "east", "north"]].itertuples(False)]
    (tmp_path / "tiles.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    from_geojson = build_index(str(tmp_path / "tiles.geojson"))
    pd.testing.assert_frame_equal(from_geojson, xyz)
    frame.drop(columns=["maxy"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['north'\]"):
        build_index(str(tmp_path / "bad.csv"))
    frame.assign(maxy=200.0).to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(DataError, match="invalid EPSG:4326 bounds"):
        build_index(str(tmp_path / "bad2.csv"))


def test_region_bbox_polygon_and_errors(region, tmp_path):
    index = build_index(region["xyz"])
    w, s, e, n = region["bbox"]
    from landslide.config import RegionConfig

    assert len(load_region(RegionConfig()).select(index)) == 12
    # a triangle over the west half: tiles it only touches at an edge are not selected
    tri = {"type": "Polygon", "coordinates": [[[w, s], [(w + e) / 2, s], [w, n], [w, s]]]}
    (tmp_path / "tri.geojson").write_text(json.dumps({"type": "Feature", "geometry": tri, "properties": {}}))
    picked = load_region(RegionConfig(geojson=str(tmp_path / "tri.geojson"))).select(index)
    boxes = shapely.box(picked["west"], picked["south"], picked["east"], picked["north"])
    assert 0 < len(picked) < 12 and all(shapely.area(shapely.intersection(shapely.geometry.shape(tri), boxes)) > 0)
    edge = RegionConfig(bbox=(index["east"].max(), s, index["east"].max() + 0.01, n))
    assert load_region(edge).select(index).empty
    for bad in ((10, 0, 10, 1), (10, 1, 20, 0), (-190, 0, 5, 1)):  # (10, 0, 5, 1) crosses 180: valid
        with pytest.raises(ValueError, match="west != east"):
            RegionConfig(bbox=bad)
    (tmp_path / "pt.geojson").write_text(json.dumps({"type": "Point", "coordinates": [w, s]}))
    with pytest.raises(ConfigError, match="Polygon or MultiPolygon"):
        load_region(RegionConfig(geojson=str(tmp_path / "pt.geojson")))
    (tmp_path / "utm.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[500000, 3300000], [501000, 3300000], [501000, 3301000], [500000, 3300000]]]}))
    with pytest.raises(ConfigError, match="not lon/lat degrees"):
        load_region(RegionConfig(geojson=str(tmp_path / "utm.geojson")))


# ------------------------------------------------------------------------------------------------ predictor
def test_predictor_matches_evaluation(model_dir, synth_manifest):
    from landslide.data import manifest as manifest_lib
    from landslide.evaluation.evaluate import predict_manifest
    from landslide.models.checkpoint import load_checkpoint

    model, card = load_checkpoint(model_dir)
    data = manifest_lib.load(synth_manifest)
    expected, _ = predict_manifest(model, card, data, batch_size=8)
    predictor = Predictor(model_dir)
    batch = np.stack([predictor.prepare(read_tile(u)) for u in expected["uri"]])
    np.testing.assert_allclose(predictor.predict(batch), expected["probability"], atol=1e-5)
    # images at another size are prepared (resized as evaluation resizes), never scored at the wrong size
    raw = np.stack([read_tile(u) for u in expected["uri"][:4]])
    assert raw.shape[1] != predictor.input_size
    np.testing.assert_allclose(predictor.predict(raw), expected["probability"][:4], atol=1e-5)
    with pytest.raises(ValueError, match="batch of RGB uint8 images"):
        predictor.predict(raw[0])
    assert predictor.info["version"] == card.weights_sha256[:12] and len(predictor.info["version"]) == 12
    probs, cams = predictor.explain(batch[:3])
    assert cams.shape == (3, predictor.input_size, predictor.input_size) and 0 <= cams.min() and cams.max() <= 1
    np.testing.assert_allclose(probs, expected["probability"][:3], atol=1e-5)
    predictor.close()


# ------------------------------------------------------------------------------------------------ sweeps
def _corrupt_copy(region: dict, dst) -> tuple[str, dict]:
    """The region's XYZ tree with three bad tiles: truncated JPEG, empty file, text named .png."""
    root = str(dst / "xyz")
    shutil.copytree(region["xyz"], root)
    tiles = sorted(storage.list_files(root, (".jpg",)))
    with open(tiles[1], "r+b") as fh:
        fh.truncate(300)
    open(tiles[4], "wb").close()
    bad_png = tiles[7].replace(".jpg", ".png")
    os.remove(tiles[7])
    with open(bad_png, "w") as fh:
        fh.write("not an image")
    ids = ["/".join(p.rsplit(".", 1)[0].split("/")[-3:]) for p in (tiles[1], tiles[4], bad_png)]
    return root, dict(zip(ids, ["truncated", "empty file", "not a recognised image format"]))


def test_sweep_outputs_with_corrupt_tiles(model_dir, region, median_threshold, tmp_path):
    root, bad = _corrupt_copy(region, tmp_path)
    out = str(tmp_path / "out")
    s = run_sweep(sweep_cfg(model_dir, root, out, threshold=median_threshold))
    assert s["tiles_in"] == 12 == s["tiles_ok"] + s["tiles_nodata"] + s["tiles_failed"] and s["tiles_failed"] == 3
    assert sum(s["failure_reasons"].values()) == 3 and s["shards"] == 3 and s["tiles_nodata"] == 0
    inv = read_parquet(storage.join(out, "inventory.parquet"))
    assert len(inv) == 12 and inv["tile_id"].is_unique
    assert set(inv["status"]) == {"ok", "error"} and (inv.loc[inv["status"] == "ok", "reason"] == "").all()
    failed = inv[inv["status"] != "ok"].set_index("tile_id")
    for tile_id, reason in bad.items():
        assert failed.loc[tile_id, "status"] == "error" and reason in failed.loc[tile_id, "reason"]
        assert np.isnan(failed.loc[tile_id, "probability"]) and pd.isna(failed.loc[tile_id, "label"])
    # GeoParquet: WKB footprints equal the bounds, metadata per the spec
    meta = json.loads(pq.read_schema(io.BytesIO(storage.read_bytes(storage.join(out, "inventory.parquet"))))
                      .metadata[b"geo"])
    assert meta["primary_column"] == "geometry" and meta["columns"]["geometry"]["encoding"] == "WKB"
    geoms = shapely.from_wkb(inv["geometry"])
    np.testing.assert_allclose(shapely.bounds(geoms), inv[["west", "south", "east", "north"]].to_numpy())
    # GeoJSON of positives, with overlays referenced and present
    positives = inv[inv["label"] == "landslide"]
    assert 0 < len(positives) < s["tiles_ok"] and s["positives"] == len(positives)
    fc = json.load(open(os.path.join(out, "inventory.geojson")))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(positives)
    for f in fc["features"]:
        row = positives.set_index("tile_id").loc[f["properties"]["tile_id"]]
        assert shapely.hausdorff_distance(shapely.geometry.shape(f["geometry"]),  # GeoJSON keeps 1e-7 degrees
                                          shapely.box(row.west, row.south, row.east, row.north)) < 1e-7
        assert f["properties"]["probability"] == pytest.approx(row.probability)
        assert f["properties"]["model_version"] == s["model"]["version"]
        assert os.path.getsize(os.path.join(out, f["properties"]["cam"])) > 100
    areas = json.load(open(os.path.join(out, "landslide_areas.geojson")))["features"]
    assert sum(a["properties"]["tiles"] for a in areas) == len(positives)
    assert sum(a["properties"]["area_km2"] for a in areas) == pytest.approx(s["area_km2_positive"], abs=1e-6)
    assert s["area_km2_swept"] > s["area_km2_positive"] > 0


def test_sweep_resumes_without_gaps_or_duplicates(model_dir, region, tmp_path):
    run_sweep(sweep_cfg(model_dir, region["xyz"], str(tmp_path / "full")))
    out = str(tmp_path / "resumed")
    part = run_sweep(sweep_cfg(model_dir, region["xyz"], out), stop_after_shards=1)
    assert part == {"interrupted": True, "shards_done": 1, "shards": 3}
    assert not os.path.exists(os.path.join(out, "inventory.parquet"))
    messages = []
    done = run_sweep(sweep_cfg(model_dir, region["xyz"], out), progress=messages.append)
    assert "resuming: 1 of 3 shards already written" in messages[0]
    assert done["tiles_this_run"] == 7 and done["tiles_in"] == 12
    a, b = read_parquet(os.path.join(tmp_path, "full", "inventory.parquet")), read_parquet(
        os.path.join(out, "inventory.parquet"))
    pd.testing.assert_frame_equal(a, b)
    again = run_sweep(sweep_cfg(model_dir, region["xyz"], out))
    assert again["tiles_this_run"] == 0 and again["tiles_in"] == 12
    with pytest.raises(ConfigError, match="holds another sweep .*threshold"):
        run_sweep(sweep_cfg(model_dir, region["xyz"], out, threshold=0.9))


def test_geotiff_sweep_matches_xyz_sweep(model_dir, region, tmp_path):
    run_sweep(sweep_cfg(model_dir, region["xyz"], str(tmp_path / "a")))
    xyz = read_parquet(str(tmp_path / "a" / "inventory.parquet"))
    # windows of the tiles' size (the default is the model's input size, 32 px here)
    run_sweep(sweep_cfg(model_dir, region["geotiff"], str(tmp_path / "b"), region={"bbox": region["bbox"]},
                        tiles={"chip_size": 64}))
    tif = read_parquet(str(tmp_path / "b" / "inventory.parquet"))
    assert (tif["status"] == "ok").all() and len(tif) == len(xyz)
    key = ["west", "north"]
    merged = xyz.round({k: 9 for k in key}).merge(tif.round({k: 9 for k in key}), on=key, suffixes=("_x", "_t"))
    assert len(merged) == 12
    # same pixels, except that the XYZ tiles went through JPEG
    assert np.abs(merged["probability_x"] - merged["probability_t"]).max() < 0.05


def test_sweep_config_errors(model_dir, region, tmp_path):
    with pytest.raises(ConfigError, match="tiles: Field required"):
        parse_config({"model": model_dir, "output": "o"}, "t", schema=SweepConfig)
    with pytest.raises(ConfigError, match="shard_size"):
        sweep_cfg(model_dir, region["xyz"], "o", shard_size=0)
    with pytest.raises(DataError, match="no tiles of .* intersect the region"):
        run_sweep(sweep_cfg(model_dir, region["xyz"], str(tmp_path / "o"), region={"bbox": [0, 0, 1, 1]}))
    from landslide.errors import CheckpointError

    with pytest.raises(CheckpointError, match="model card"):
        run_sweep(sweep_cfg(str(tmp_path / "nomodel"), region["xyz"], str(tmp_path / "o2")))


def test_geotiff_sweep_in_gcs(model_dir, region, gcs_emulator, tmp_path):
    """GeoTIFF windows read with ranged requests through fsspec; inventory written to the bucket."""
    import gcsfs

    _, bucket = gcs_emulator
    fs = gcsfs.GCSFileSystem()
    fs.put(region["geotiff"], f"{bucket}/scenes/region.tif")
    fs.put(model_dir, f"{bucket}/sweep-model", recursive=True)
    out = f"gs://{bucket}/sweeps/tif"
    s = run_sweep(sweep_cfg(f"gs://{bucket}/sweep-model", f"gs://{bucket}/scenes", out, tiles={"chip_size": 64}))
    assert s["tiles_in"] == s["tiles_ok"] == 12, s["failure_reasons"]
    inv = read_parquet(f"{out}/inventory.parquet")
    assert set(inv["uri"]) == {f"gs://{bucket}/scenes/region.tif"} and inv["window"].str.endswith(",64,64").all()
    local = run_sweep(sweep_cfg(model_dir, region["geotiff"], str(tmp_path / "local"), tiles={"chip_size": 64}))
    ref = read_parquet(str(tmp_path / "local" / "inventory.parquet"))
    np.testing.assert_allclose(inv["probability"], ref["probability"], atol=1e-6)
    assert local["positives"] == s["positives"]


def test_geotiff_nodata_and_16_bit_windows(tmp_path):
    """A single-band 16-bit scene in UTM with a nodata half: windows are stretched to 8 bits, all-nodata
    windows are recorded as 'no data', bounds come back in lon/lat."""
    import rasterio
    from rasterio.transform import from_origin

    from landslide.errors import ImageError

    data = np.random.default_rng(0).integers(1000, 3000, (1, 64, 128), dtype=np.uint16)
    data[:, :, 64:] = 0
    path = str(tmp_path / "utm16.tif")
    with rasterio.open(path, "w", driver="GTiff", width=128, height=64, count=1, dtype="uint16", nodata=0,
                       crs="EPSG:32647", transform=from_origin(500000, 3320000, 0.5, 0.5)) as ds:
        ds.write(data)
    idx = build_index(path, chip_size=64)
    assert len(idx) == 2 and (idx["west"] > 98).all() and (idx["east"] < 100).all() and (idx["south"] > 29).all()
    img = read_tile(path, "0,0,64,64")
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3) and img.min() == 0 and img.max() == 255
    with pytest.raises(ImageError, match="no data"):
        read_tile(path, "64,0,64,64")


def test_multimodal_model_sweeps_with_tags_unknown(multimodal_run, region, tmp_path):
    """Tiles carry no tags: a multi-modal model sweeps with every tag unknown, as its evaluation measured."""
    model = multimodal_run["model_dir"]
    s = run_sweep(sweep_cfg(model, region["xyz"], str(tmp_path / "mm"), explain={"enabled": False}))
    inv = read_parquet(str(tmp_path / "mm" / "inventory.parquet"))
    assert s["tiles_ok"] == 12 == len(inv)
    predictor = Predictor(model)
    index = build_index(region["xyz"]).set_index("tile_id")
    expected = predictor.predict(np.stack([predictor.prepare(read_tile(index.loc[t, "uri"])) for t in inv["tile_id"]]))
    np.testing.assert_allclose(inv["probability"].to_numpy(), expected, atol=1e-5)
