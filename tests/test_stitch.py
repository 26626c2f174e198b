"""Stitching overlapping windows into one probability raster per scene (footprint sweeps, issue 21)."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from landslide.inventory.stitch import NODATA, ProbabilityMosaic, blend_weights, window_offsets


@pytest.mark.parametrize("length,size,overlap", [(1000, 128, 32), (128, 128, 16), (129, 128, 0), (50, 128, 32),
                                                 (4096, 256, 64), (300, 100, 99)])
def test_windows_cover_the_scene_with_the_overlap_asked(length, size, overlap):
    starts = window_offsets(length, size, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + size >= length and (length <= size or starts[-1] + size == length)
    covered = np.zeros(max(length, size), bool)
    for s in starts:
        covered[s:s + size] = True
    assert covered[:length].all()
    assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap enough
    for bad in ((length, size, size), (length, size, -1), (length, 0, 0)):
        with pytest.raises(ValueError):
            window_offsets(*bad)


def test_weights_fall_towards_the_edges_and_never_reach_zero():
    w = blend_weights(64, 16)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert w[32, 32] == 1 and 0 < w[0, 0] < w[0, 32] < w[16, 32] <= 1 and np.allclose(w, w.T)
    assert (blend_weights(8, 0) == 1).all()


def test_mosaic_blends_overlapping_windows_without_seams_and_marks_nodata(tmp_path):
    """A smooth field cut into overlapping windows comes back exactly; where two windows disagree, each one's
    interior wins; pixels no window reached are nodata; the output is a Cloud-Optimized GeoTIFF."""
    height, width, size, overlap = 300, 420, 128, 32
    yy, xx = np.mgrid[0:height, 0:width]
    field = (0.5 + 0.4 * np.sin(xx / 40) * np.cos(yy / 55)).astype(np.float32)
    transform = from_origin(500000, 3000000, 0.5, 0.5)
    weights = blend_weights(size, overlap)
    handed = []  # block rows handed on as soon as no later window reaches them: memory of a band, not a scene
    with ProbabilityMosaic(width, height, transform, "EPSG:32648", block=128,
                           on_block=lambda top, rows: handed.append((top, rows))) as mosaic:
        for r in window_offsets(height, size, overlap):
            for c in window_offsets(width, size, overlap):
                mosaic.add(c, r, field[r:r + size, c:c + size], weights[:min(size, height - r), :min(size, width - c)])
            assert len(mosaic._sum) <= 2 * 128  # the rolling band
        out = np.concatenate([block for _, block in mosaic.blocks()])
        assert np.allclose(out, field, atol=1e-5)
        assert [top for top, _ in handed] == [0, 128, 256] and np.allclose(np.concatenate([b for _, b in handed]), out)
        uri = mosaic.write_cog(str(tmp_path / "out" / "scene.probability.tif"))
    with rasterio.open(uri) as ds:
        assert ds.crs.to_epsg() == 32648 and ds.transform == transform and ds.nodata == NODATA
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and ds.overviews(1)
        assert np.allclose(ds.read(1), field, atol=1e-5)
    assert not (tmp_path / "out" / "scene.probability.tif.partial").exists()

    # two windows that disagree: near each one's centre its own value wins; outside both: nodata; NaN ignored
    with ProbabilityMosaic(200, 100, transform, "EPSG:32648") as mosaic:
        w = blend_weights(100, 40)
        mosaic.add(0, 0, np.full((100, 100), 0.9, np.float32), w)
        mosaic.add(60, 0, np.full((100, 100), 0.1, np.float32), w)
        nan = np.full((20, 20), np.nan, np.float32)
        mosaic.add(175, 40, nan, np.ones((20, 20), np.float32))  # nodata in: nothing added
        mosaic.add(-50, -50, np.full((10, 10), 0.5, np.float32), np.ones((10, 10), np.float32))  # outside: ignored
        mosaic.finish()
        with pytest.raises(ValueError, match="row order"):  # rows already handed on
            mosaic.add(0, 0, np.full((10, 10), 0.5, np.float32), np.ones((10, 10), np.float32))
        out = np.concatenate([block for _, block in mosaic.blocks()])
    assert out[50, 20] == pytest.approx(0.9) and out[50, 140] == pytest.approx(0.1)
    assert 0.1 < out[50, 80] < 0.9 and (out[:, 160:] == NODATA).all()
    with pytest.raises(ValueError):
        ProbabilityMosaic(0, 10, transform, "EPSG:32648")


def test_mosaic_writes_to_object_storage(gcs_emulator, tmp_path):
    """gs:// output through the GCS emulator: the COG is streamed up whole and reads back the same."""
    from landslide import storage

    _, bucket = gcs_emulator
    data = np.linspace(0, 1, 64 * 96, dtype=np.float32).reshape(64, 96)
    with ProbabilityMosaic(96, 64, from_origin(0, 64, 1, 1), "EPSG:3857", workdir=str(tmp_path / "w")) as mosaic:
        mosaic.add(0, 0, data, np.ones_like(data))
        uri = mosaic.write_cog(f"gs://{bucket}/mosaics/scene.probability.tif")
    assert (tmp_path / "w").exists()  # a workdir given by the caller is the caller's to remove
    local = tmp_path / "back.tif"
    local.write_bytes(storage.read_bytes(uri))
    with rasterio.open(local) as ds:
        assert np.allclose(ds.read(1), data) and ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def _raster(path, data, transform, crs="EPSG:32648", nodata=None):
    profile = {"driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2], "count": 1 if data.ndim == 2
               else data.shape[0], "dtype": data.dtype, "crs": crs, "transform": transform}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data if data.ndim == 3 else data[None])
    return str(path)


def test_footprints_traced_by_block_rows_equal_the_whole_raster(tmp_path):
    """Blobs across block seams (also touching only at a corner across one) come out as tracing the whole
    raster would give them: the same footprints, pixels, probabilities and outlines."""
    from landslide.inventory.footprints import trace
    from landslide.inventory.scene_footprints import trace_raster

    rng = np.random.default_rng(0)
    prob = np.full((200, 150), 0.1, np.float32)
    for _ in range(25):
        r, c, h, w = rng.integers(0, 190), rng.integers(0, 140), rng.integers(2, 70), rng.integers(2, 40)
        prob[r:r + h, c:c + w] = rng.uniform(0.6, 1.0)
    prob[60:64, 10:12] = 0.9  # ends on the seam at row 64 ...
    prob[64:70, 12:14] = 0.9  # ... and continues diagonally below it: one 8-connected footprint
    prob[150:160, 100:120] = NODATA  # nodata is never landslide
    # an ordinary georeference (not round numbers): the seams must still join exactly
    transform = from_origin(387098.87, 2693305.80, 0.5449, 0.5449)
    uri = _raster(tmp_path / "p.tif", prob, transform, nodata=NODATA)
    whole = trace(prob, 0.5, transform, NODATA)
    blocks = trace_raster(uri, 0.5, block=32)
    assert len(blocks) == len(whole) > 5
    bar = np.zeros((1100, 40), np.float32)
    bar[:, 10:14] = 0.9  # one bar down the whole raster, across two default-size seams
    for origin in ((387098.87, 2693305.80, 0.5449), (101.123456789, 31.987654321, 0.0000051234)):
        geo_uri = _raster(tmp_path / "bar.tif", bar, from_origin(*origin, origin[2]),
                          crs="EPSG:32648" if origin[0] > 1000 else "EPSG:4326")
        assert len(trace_raster(geo_uri, 0.5)) == 1
    key = lambda f: (f["pixels"], round(f["geometry"].area, 3), round(f["max_probability"], 6))  # noqa: E731
    for a, b in zip(sorted(whole, key=key), sorted(blocks, key=key)):
        assert a["pixels"] == b["pixels"] and a["max_probability"] == pytest.approx(b["max_probability"])
        assert a["mean_probability"] == pytest.approx(b["mean_probability"], rel=1e-5)
        assert a["geometry"].symmetric_difference(b["geometry"]).area == pytest.approx(0, abs=1e-6)


def test_a_scene_is_stitched_at_the_model_scale_and_traced(tmp_path, footprint_run):
    """A GeoTIFF scene with two bright blobs through the tiny footprint model: one probability COG aligned with
    the scene (nodata where the scene has none), and footprints over the blobs, in the scene's CRS."""
    from landslide.inference.footprints import FootprintPredictor
    from landslide.inventory.scene_footprints import scene_grid, stitch_scene, trace_raster

    rng = np.random.default_rng(1)
    scene = rng.integers(40, 90, (3, 150, 230)).astype(np.uint8)
    scene[:, 30:60, 40:75] = 210
    scene[:, 90:130, 150:200] = 210  # crosses window borders
    scene[:, :, 215:] = 0  # a nodata strip at the east edge
    transform = from_origin(500000, 3000000, 0.5, 0.5)
    uri = _raster(tmp_path / "scene.tif", scene, transform, nodata=0)
    predictor = FootprintPredictor(footprint_run["model_dir"], device="cpu")
    grid = scene_grid(predictor, 0.5)
    assert grid.window_px == predictor.input_size and "no GSD" in grid.reason
    out = stitch_scene(predictor, uri, str(tmp_path / "scene.probability.tif"), batch_size=4, block=64,
                       threshold=predictor.threshold)
    assert out["windows"] == len(window_offsets(150, 64, 16)) * len(window_offsets(230, 64, 16))
    with rasterio.open(out["uri"]) as ds:
        assert (ds.width, ds.height, ds.transform, ds.crs.to_epsg()) == (230, 150, transform, 32648)
        prob = ds.read(1)
    assert (prob[:, 216:] == NODATA).all() and ((prob[:, :214] >= 0) & (prob[:, :214] <= 1)).all()
    assert prob[40:50, 50:65].mean() > prob[5:20, 100:140].mean()  # the blob is more landslide than grass
    found = trace_raster(out["uri"], predictor.threshold, block=64)
    assert found and all(f["geometry"].is_valid for f in found)
    # traced while stitching, block row by block row: the same footprints as tracing the written COG
    assert [(f["pixels"], round(f["mean_probability"], 6)) for f in out["footprints"]] == \
        [(f["pixels"], round(f["mean_probability"], 6)) for f in found]
    assert all(a["geometry"].equals(b["geometry"]) for a, b in zip(out["footprints"], found))
    minx, miny, maxx, maxy = found[0]["geometry"].bounds
    assert 500000 <= minx < maxx <= 500000 + 230 * 0.5 and 3000000 - 150 * 0.5 <= miny < maxy <= 3000000


def test_footprint_sweep_merges_across_scenes_resumes_and_refuses_what_it_cannot_read(tmp_path, footprint_run):
    """Two adjacent scenes with a blob across their border, and a third far away outside the region: the sweep
    (``landslide sweep`` with a footprint model) reads the two, writes a probability COG and footprints per
    scene, merges the blob's halves into one footprint spanning both scenes, and resumes scene by scene."""
    import json

    import pandas as pd
    from shapely.geometry import shape

    from landslide.config import SweepConfig, parse_config
    from landslide.errors import StorageError
    from landslide.inventory.sweep import run_sweep, summary_lines
    from tests.test_cli import run_cli

    rng = np.random.default_rng(2)
    folder = tmp_path / "scenes"
    folder.mkdir()
    both = rng.integers(40, 90, (3, 128, 256)).astype(np.uint8)
    both[:, 40:90, 100:160] = 210  # across x = 128: the border of the two scenes
    west, east = from_origin(500000, 3000000, 0.5, 0.5), from_origin(500064, 3000000, 0.5, 0.5)
    _raster(folder / "a_west.tif", np.ascontiguousarray(both[:, :, :128]), west)
    _raster(folder / "b_east.tif", np.ascontiguousarray(both[:, :, 128:]), east)
    far = rng.integers(40, 90, (3, 64, 64)).astype(np.uint8)
    _raster(folder / "c_far.tif", far, from_origin(700000, 3100000, 0.5, 0.5))
    out = tmp_path / "sweep"
    raw = {"model": footprint_run["model_dir"], "output": str(out), "tiles": {"source": str(folder)},
           "region": {"bbox": [105.0, 27.0, 105.2, 27.2]}, "batch_size": 4, "footprints": {"block": 64}}
    # the region around the two scenes (UTM 48N, 500 km E, 3000 km N: about 105.0 E, 27.1 N)
    cfg = parse_config(raw, "sweep", schema=SweepConfig)
    first = run_sweep(cfg, stop_after_shards=1)
    assert first["interrupted"] and first["scenes_done"] == 1 and first["scenes"] == 2
    assert "run again to resume" in summary_lines(first, str(out))
    done_one = sorted(p.name for p in (out / "scenes").glob("*.footprints.parquet"))
    assert done_one == ["a_west.footprints.parquet"]
    summary = run_sweep(cfg)
    assert summary["scenes"] == 2 and summary["scenes_swept_this_run"] == 1  # the first scene was kept
    assert summary["footprints"] >= 1 and "footprints" in summary_lines(summary, str(out))
    for name in ("a_west", "b_east"):
        with rasterio.open(out / "scenes" / f"{name}.footprint_probability.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and ds.crs.to_epsg() == 32648
    gj = json.load(open(out / "footprints.geojson"))
    table = pd.read_parquet(out / "footprints.parquet")
    assert len(gj["features"]) == len(table) == summary["footprints"]
    spanning = [f for f in gj["features"] if f["properties"]["scenes"] == "a_west,b_east"]
    assert len(spanning) == 1  # the blob's two halves are one footprint
    blob = shape(spanning[0]["geometry"])
    assert 104.9 < blob.centroid.x < 105.1 and spanning[0]["properties"]["area_m2"] > 200  # 60 x 50 px of 0.25 m²
    assert gj["features"][0]["properties"]["model_version"] == summary["model"]["version"]
    # a missing source and scenes without a CRS are one-line errors
    with pytest.raises(StorageError, match="xyz: not found"):
        run_sweep(parse_config({**raw, "tiles": {"source": str(tmp_path / "xyz")}, "output": str(tmp_path / "o2")},
                               "sweep", schema=SweepConfig))
    nocrs = tmp_path / "nocrs"
    nocrs.mkdir()
    with rasterio.open(nocrs / "s.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(far)
    res = run_cli("sweep", "--config", _yaml(tmp_path, {**raw, "region": {}, "tiles": {"source": str(nocrs)},
                                                         "output": str(tmp_path / "o3")}))
    assert res.returncode == 2 and "no CRS" in res.stderr and "Traceback" not in res.stderr


def _yaml(tmp_path, cfg: dict) -> str:
    import yaml

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_footprint_sweep_keeps_scene_names_apart_refuses_mixed_settings_and_filters_after_merging(
        tmp_path, footprint_run, monkeypatch):
    """With a model that calls every bright pixel landslide (exact): scenes of one file name in two folders are
    both swept; a footprint cut by a scene border passes min_area_m2 as a whole even where one part alone would
    not; a thin one-pixel line is still dropped; the sweep's own output inside the source is not read as a
    scene; rerunning with other settings into the same output is refused in one line."""
    import json

    from landslide.config import SweepConfig, parse_config
    from landslide.errors import ConfigError
    from landslide.inference.footprints import FootprintPredictor
    from landslide.inventory.sweep import run_sweep

    def bright(self, batch):
        batch = np.asarray(batch)
        if batch.shape[1:3] != (self.input_size, self.input_size):
            batch = np.stack([self.prepare(i) for i in batch])
        return np.where(batch[..., 0] > 150, 0.999, 0.001).astype(np.float32)

    monkeypatch.setattr(FootprintPredictor, "predict", bright)
    monkeypatch.setattr(FootprintPredictor, "min_object_px", 1, raising=False)
    src = tmp_path / "src"
    full = np.full((3, 128, 256), 60, np.uint8)
    full[:, 30:90, 60:129] = 220  # 60 x 69 px: 68 columns in the west scene, 1 in the east one
    full[:, 100:101, 120:140] = 220  # a one-pixel line across the border: 5 m², under the minimum
    (src / "2023").mkdir(parents=True)
    (src / "2024").mkdir(parents=True)
    _raster(src / "2023" / "x.tif", np.ascontiguousarray(full[:, :, :128]), from_origin(500000, 3000000, 0.5, 0.5))
    _raster(src / "2024" / "x.tif", np.ascontiguousarray(full[:, :, 128:]), from_origin(500064, 3000000, 0.5, 0.5))
    out = src / "out"  # inside the source: its probability COGs must not be swept as scenes on a rerun
    raw = {"model": footprint_run["model_dir"], "output": str(out), "tiles": {"source": str(src)}, "batch_size": 4,
           "footprints": {"block": 64, "min_area_m2": 20}}
    cfg = parse_config(raw, "sweep", schema=SweepConfig)
    for _ in range(2):  # the second run resumes both scenes and reads nothing of its own output
        summary = run_sweep(cfg)
        assert summary["scenes"] == 2 and sorted(r["scene"] for r in summary["per_scene"]) == ["2023__x", "2024__x"]
    assert summary["scenes_swept_this_run"] == 0
    gj = json.load(open(out / "footprints.geojson"))
    assert [(f["properties"]["scenes"], f["properties"]["pixels"]) for f in gj["features"]] == [("2023__x,2024__x", 4140)]
    assert gj["features"][0]["properties"]["area_m2"] == pytest.approx(4140 * 0.25, rel=0.01)
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(parse_config({**raw, "footprints": {"block": 64, "min_area_m2": 50}}, "sweep", schema=SweepConfig))


def test_cross_scene_merge_streams_scene_by_scene_and_writes_whole_files(tmp_path):
    """The cross-scene merge yields each scene's inner footprints as the scene is read (memory holds only the
    parts along scene edges), joins edge parts at the end with the filters applied to the whole, and the writer
    puts a GeoParquet + GeoJSON in place only when both are finished."""
    import json

    import pandas as pd
    import pyarrow.parquet as pq
    import shapely

    from landslide.inventory.footprint_sweep import FootprintWriter, merge_scenes

    def frame(scene, rows):
        return pd.DataFrame([{"scene": scene, "area_m2": a, "pixels": px, "mean_probability": mp,
                              "max_probability": mp + 0.1, "edge": e, "min_px": 10.0,
                              "wgs84_wkb": shapely.to_wkb(shapely.box(*b))} for b, a, px, mp, e in rows])

    a = frame("a", [((10.0, 0.0, 10.001, 0.001), 100.0, 40, 0.8, False),     # inner
                    ((10.009, 0.0, 10.010, 0.001), 60.0, 6, 0.6, True)])     # at a's east edge
    b = frame("b", [((10.010, 0.0, 10.011, 0.001), 60.0, 6, 0.7, True),      # its continuation in b
                    ((10.019, 0.005, 10.0195, 0.0055), 5.0, 3, 0.9, True)])  # alone at b's edge, too small
    read = []

    def frames():
        for f in (a, b):
            read.append(f["scene"].iloc[0])
            yield f

    batches = merge_scenes(frames())
    first = next(batches)
    assert read == ["a"] and [f["scenes"] for f in first] == ["a"] and first[0]["pixels"] == 40
    assert next(batches) == [] and read == ["a", "b"]  # b has no inner footprint
    (joined,) = next(batches)  # 6 + 6 px pass the 10-px minimum together; the 3-px part alone does not
    assert joined["scenes"] == "a,b" and joined["pixels"] == 12 and joined["max_probability"] == pytest.approx(0.8)
    assert joined["mean_probability"] == pytest.approx(0.65) and joined["geometry"].bounds[0] == pytest.approx(10.009)
    with pytest.raises(StopIteration):
        next(batches)

    out = tmp_path / "inventory"
    writer = FootprintWriter(str(out), "test sweep", {"name": "m", "version": "1"})
    writer.write(first)
    assert not (out / "footprints.parquet").exists()  # nothing in place before close
    writer.write([joined])
    writer.close()
    table = pq.read_table(out / "footprints.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and table.column("footprint_id").to_pylist() == [0, 1]
    assert table.column("scenes").to_pylist() == ["a", "a,b"] and table.column("model_version").to_pylist()[1] == "1"
    assert shapely.from_wkb(table.column("geometry").to_pylist()[1]).equals(joined["geometry"])
    gj = json.loads((out / "footprints.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and gj["name"] == "test sweep"
    assert [f["properties"]["footprint_id"] for f in gj["features"]] == [0, 1] and writer.count == 2
    assert writer.area_m2 == pytest.approx(100.0 + joined["area_m2"])
    empty = FootprintWriter(str(tmp_path / "none"), "empty", {"name": "m", "version": "1"})
    empty.close()
    assert json.loads((tmp_path / "none" / "footprints.geojson").read_text())["features"] == []
    assert pq.read_table(tmp_path / "none" / "footprints.parquet").num_rows == 0


def _png(path, rgb) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def test_footprint_sweep_of_an_xyz_tree_by_metatiles(tmp_path, footprint_run):
    """An XYZ tree swept with a footprint model: tiles grouped into metatiles (2 x 2 here), each mosaicked in
    EPSG:3857 and stitched; a blob across a metatile border is one footprint; a corrupt tile is recorded and
    left as nodata; re-running resumes; another metatile size in the same output is refused."""
    import json

    import mercantile
    import pandas as pd
    import rasterio

    from landslide.config import SweepConfig, parse_config
    from landslide.errors import ConfigError
    from landslide.inventory.sweep import run_sweep

    from conftest import FOOTPRINT_TREE, write_footprint_tree

    tree = write_footprint_tree(tmp_path / "tree")
    z, x0, y0 = FOOTPRINT_TREE
    out = tmp_path / "sweep"
    raw = {"model": footprint_run["model_dir"], "output": str(out), "tiles": {"source": str(tree), "zoom": z},
           "region": {"bbox": [104.99, 27.08, 105.02, 27.11]}, "batch_size": 4,
           "footprints": {"block": 64, "metatile": 2}}
    cfg = parse_config(raw, "sweep", schema=SweepConfig)
    summary = run_sweep(cfg)
    assert summary["source_format"] == "xyz" and summary["scenes"] == 3  # the missing tile's metatile is empty
    assert summary["tiles"] == 5 and summary["tiles_unreadable"] == 1
    bad = [r for r in summary["per_scene"] if r["tiles_unreadable"]]
    assert len(bad) == 1 and "tile_id" in bad[0]["tiles_unreadable"][0] and bad[0]["tiles_unreadable"][0]["reason"]
    west_key, east_key = f"z{z}-m2-{x0 // 2}-{y0 // 2}", f"z{z}-m2-{(x0 + 2) // 2}-{y0 // 2}"
    with rasterio.open(out / "scenes" / f"{west_key}.footprint_probability.tif") as ds:
        assert ds.crs.to_epsg() == 3857 and (ds.width, ds.height) == (128, 64)
        assert ds.bounds.left == pytest.approx(mercantile.xy_bounds(x0, y0, z).left)
    table = pd.read_parquet(out / "footprints.parquet")
    spanning = table[table["scenes"] == f"{west_key},{east_key}"]
    assert len(spanning) == 1  # the blob's two halves are one footprint
    gj = json.load(open(out / "footprints.geojson"))
    feature = next(f for f in gj["features"] if f["properties"]["scenes"] == f"{west_key},{east_key}")
    lons = [p[0] for ring in feature["geometry"]["coordinates"] for p in ring]
    border = mercantile.bounds(x0 + 2, y0, z).west
    assert min(lons) < border < max(lons)
    metres_per_px = (mercantile.xy_bounds(x0, y0, z).right - mercantile.xy_bounds(x0, y0, z).left) / 64 * \
        np.cos(np.radians(27.1))  # Web Mercator scale at 27° N
    assert 0.5 < feature["properties"]["area_m2"] / (26 * 42 * metres_per_px ** 2) < 1.5
    again = run_sweep(cfg)
    assert again["scenes_swept_this_run"] == 0 and again["footprints"] == summary["footprints"]
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(parse_config({**raw, "footprints": {"block": 64, "metatile": 4}}, "sweep", schema=SweepConfig))


def test_footprint_sweep_of_a_tile_manifest_across_the_antimeridian(tmp_path, footprint_run):
    """Listed tiles (a manifest with lon/lat bounds) are scenes of their own in EPSG:4326: a blob across two
    tiles that meet at 180° is one footprint cut at 180°, and a tile that itself spans 180° is read with east +
    360 and its footprint cut there too."""
    import json

    from landslide.config import SweepConfig, parse_config
    from landslide.inventory.sweep import run_sweep

    rng = np.random.default_rng(7)
    pair = rng.integers(40, 90, (64, 128, 3)).astype(np.uint8)
    pair[20:44, 50:80] = 210  # across the 180° meridian between the two tiles
    one = rng.integers(40, 90, (64, 64, 3)).astype(np.uint8)
    one[20:44, 20:44] = 210  # in the middle of a tile that spans 180°
    _png(tmp_path / "t" / "west.png", np.ascontiguousarray(pair[:, :64]))
    _png(tmp_path / "t" / "east.png", np.ascontiguousarray(pair[:, 64:]))
    _png(tmp_path / "t" / "across.png", one)
    manifest = tmp_path / "t" / "tiles.csv"
    manifest.write_text("path,west,south,east,north\n"
                        "west.png,179.999,10.0,180.0,10.001\n"
                        "east.png,-180.0,10.0,-179.999,10.001\n"
                        "across.png,179.9995,10.002,-179.9995,10.003\n")
    out = tmp_path / "sweep"
    cfg = parse_config({"model": footprint_run["model_dir"], "output": str(out), "tiles": {"source": str(manifest)},
                        "batch_size": 4, "footprints": {"block": 64}}, "sweep", schema=SweepConfig)
    summary = run_sweep(cfg)
    assert summary["source_format"] == "manifest" and summary["scenes"] == 3 and summary["tiles_unreadable"] == 0
    features = json.load(open(out / "footprints.geojson"))["features"]
    joined = [f for f in features if "," in f["properties"]["scenes"]]
    assert len(joined) == 1 and joined[0]["geometry"]["type"] == "MultiPolygon"  # cut at 180°
    lons = [p[0] for poly in joined[0]["geometry"]["coordinates"] for ring in poly for p in ring]
    assert max(lons) == pytest.approx(180.0) and min(lons) == pytest.approx(-180.0)
    px_m2 = (0.001 / 64 * 111_320) ** 2 * np.cos(np.radians(10.0005))
    assert 0.5 < joined[0]["properties"]["area_m2"] / (24 * 30 * px_m2) < 1.5
    across = [f for f in features if f["properties"]["scenes"] == next(
        r["scene"] for r in summary["per_scene"] if r["first_tile"].endswith("across.png"))]
    assert across and across[0]["geometry"]["type"] == "MultiPolygon"
    assert all(-180 <= p[0] <= 180 for poly in across[0]["geometry"]["coordinates"] for ring in poly for p in ring)


def test_source_kind_tells_year_folders_of_scenes_from_xyz_trees(tmp_path):
    """A folder of numbered folders is an XYZ tree ({z}/{x}/{y}.png) unless the numbered folders hold GeoTIFF
    scenes themselves (2023/x.tif): then it is a folder of scenes."""
    from landslide.inventory.tiles import detect_format

    years = tmp_path / "years"
    (years / "2023").mkdir(parents=True)
    _raster(years / "2023" / "x.tif", np.zeros((3, 16, 16), np.uint8), from_origin(500000, 3000000, 0.5, 0.5))
    tree = tmp_path / "tree"
    _png(tree / "3" / "1" / "2.png", np.zeros((8, 8, 3), np.uint8))
    months = tmp_path / "months"
    (months / "2023" / "01").mkdir(parents=True)
    _raster(months / "2023" / "01" / "x.tif", np.zeros((3, 16, 16), np.uint8), from_origin(500000, 3000000, 0.5, 0.5))
    assert detect_format(str(years)) == "geotiff" and detect_format(str(tree)) == "xyz"
    assert detect_format(str(months)) == "geotiff"


def test_footprint_sweep_records_a_scene_it_cannot_read_and_goes_on(tmp_path, footprint_run):
    """A corrupt scene among good ones is recorded with its reason (summary and command line), writes nothing
    and is tried again by the next run; the good scene's footprints are kept."""
    from landslide.config import SweepConfig, parse_config
    from landslide.inventory.sweep import run_sweep, summary_lines

    folder = tmp_path / "scenes"
    folder.mkdir()
    good = np.random.default_rng(3).integers(40, 90, (3, 64, 64)).astype(np.uint8)
    good[:, 20:40, 20:40] = 210
    _raster(folder / "good.tif", good, from_origin(500000, 3000000, 0.5, 0.5))
    (folder / "bad.tif").write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header and nothing else
    # with a region too: the bad scene cannot say where it lies, yet planning goes on and records it
    cfg = parse_config({"model": footprint_run["model_dir"], "output": str(tmp_path / "out"),
                        "tiles": {"source": str(folder)}, "batch_size": 4, "footprints": {"block": 64},
                        "region": {"bbox": [104.9, 27.0, 105.1, 27.2]}}, "sweep", schema=SweepConfig)
    summary = run_sweep(cfg)
    assert summary["scenes"] == 2 and [r["scene"] for r in summary["per_scene"]] == ["good"]
    assert [f["scene"] for f in summary["scenes_failed"]] == ["bad"] and "bad.tif" in summary["scenes_failed"][0]["error"]
    assert "FAILED scene bad" in summary_lines(summary, cfg.output)
    assert not (tmp_path / "out" / "scenes" / "bad.footprints.parquet").exists()
    again = run_sweep(cfg)
    assert again["scenes_swept_this_run"] == 1 and len(again["scenes_failed"]) == 1  # only the failed one again


def test_footprint_sweeps_of_tiles_retry_what_they_could_not_fetch_and_follow_the_region(tmp_path, footprint_run,
                                                                                          monkeypatch):
    """A tile that cannot be fetched (or is over the byte limit) fails its scene, which the next run sweeps
    again; a metatile swept for a smaller region is swept again when the region grows; the most common tile
    size sets a metatile's grid; options a footprint sweep does not use are refused; the same source spelled
    otherwise resumes."""
    import json

    import mercantile

    from conftest import FOOTPRINT_TREE, write_footprint_tree

    from landslide import storage
    from landslide.config import SweepConfig, parse_config
    from landslide.errors import ConfigError, DataError, StorageError
    from landslide.inventory.sweep import run_sweep

    tree = write_footprint_tree(tmp_path / "tree")
    z, x0, y0 = FOOTPRINT_TREE
    first = mercantile.bounds(x0, y0, z)
    raw = {"model": footprint_run["model_dir"], "output": str(tmp_path / "out"), "batch_size": 4,
           "tiles": {"source": str(tree), "zoom": z}, "footprints": {"block": 64, "metatile": 2},
           "region": {"bbox": [first.west + 1e-5, first.south + 1e-5, first.east - 1e-5, first.north - 1e-5]}}
    real = storage.read_bytes
    flaky = f"{x0}/{y0}.png"

    def unreachable(uri, *a, **k):
        if uri.endswith(flaky):
            raise StorageError(f"{uri}: connection reset")
        return real(uri, *a, **k)

    monkeypatch.setattr(storage, "read_bytes", unreachable)
    with pytest.raises(DataError, match="connection reset"):  # the only scene failed: an error, nothing kept
        run_sweep(parse_config(raw, "sweep", schema=SweepConfig))
    monkeypatch.setattr(storage, "read_bytes", real)
    small = run_sweep(parse_config(raw, "sweep", schema=SweepConfig))
    assert small["scenes"] == 1 and small["scenes_swept_this_run"] == 1 and small["tiles"] == 1
    # the region grows to the whole tree: the metatile now holds two tiles and is swept again, with its neighbours
    wide = run_sweep(parse_config({**raw, "region": {}}, "sweep", schema=SweepConfig))
    assert wide["scenes"] == 3 and wide["scenes_swept_this_run"] == 3 and wide["tiles"] == 5
    # the same source spelled otherwise resumes; options footprint sweeps do not use are refused
    again = run_sweep(parse_config({**raw, "region": {}, "tiles": {"source": str(tree) + "/", "zoom": z}},
                                   "sweep", schema=SweepConfig))
    assert again["scenes_swept_this_run"] == 0
    for tiles, message in (({"index": str(tmp_path / "i.parquet")}, "tiles.index"),
                           ({"overlap": 0.5}, "footprints.overlap")):
        with pytest.raises(ConfigError, match=message):
            run_sweep(parse_config({**raw, "output": str(tmp_path / "o"), "tiles": {**raw["tiles"], **tiles}},
                                   "sweep", schema=SweepConfig))
    # the sweep's byte limit applies to tiles: here every scene fails, naming the limit
    with pytest.raises(DataError, match="exceeds the limit of 100 bytes"):
        run_sweep(parse_config({**raw, "region": {}, "output": str(tmp_path / "lim"), "max_tile_bytes": 100},
                               "sweep", schema=SweepConfig))
    # tiles of two sizes in one metatile: the common size wins
    from landslide.inventory.tile_mosaic import TileGroup, write_mosaic
    from landslide.inventory.tiles import xyz_index

    index = xyz_index(str(tree), z)
    _png(tree / str(z) / str(x0 + 1) / f"{y0}.png", np.zeros((1, 1, 3), np.uint8))  # a 1-px placeholder
    group = TileGroup("g", index.assign(x=[int(t.split("/")[1]) for t in index["tile_id"]],
                                        y=[int(t.split("/")[2]) for t in index["tile_id"]]), "EPSG:3857", z)
    out = write_mosaic(group, str(tmp_path / "m.tif"))
    assert (out["width"], out["height"]) == (3 * 64, 2 * 64) and len(out["unreadable"]) == 1
    assert json.loads((tmp_path / "out" / "footprint_sweep.json").read_text())["format"] == "xyz"
    # a tree whose every tile is corrupt is an error, not an empty inventory
    bad = tmp_path / "bad"
    for y in (y0, y0 + 1):
        (bad / str(z) / str(x0)).mkdir(parents=True, exist_ok=True)
        (bad / str(z) / str(x0) / f"{y}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="none of the 2 tiles"):
        run_sweep(parse_config({**raw, "region": {}, "output": str(tmp_path / "bad-out"),
                                "tiles": {"source": str(bad), "zoom": z}}, "sweep", schema=SweepConfig))
