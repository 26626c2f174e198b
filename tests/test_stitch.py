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
    with ProbabilityMosaic(width, height, transform, "EPSG:32648", block=128) as mosaic:
        for r in window_offsets(height, size, overlap):
            for c in window_offsets(width, size, overlap):
                mosaic.add(c, r, field[r:r + size, c:c + size], weights[:min(size, height - r), :min(size, width - c)])
        out = np.concatenate([block for _, block in mosaic.blocks()])
        assert np.allclose(out, field, atol=1e-5)
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
