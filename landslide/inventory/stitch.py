"""Overlapping windows stitched into one probability raster per scene, with memory that does not grow with
the scene: the building blocks of footprint sweeps (issue 21).

A footprint model sees a scene through windows of its input size. Predictions are least reliable near a
window's edges (the network sees no context beyond them), so windows overlap and each one's probabilities
are blended in with weights that fall towards its edges (:func:`blend_weights`): where windows overlap, the
weighted mean favours the window that sees a pixel in its interior, and seams vanish. This is the usual
"smooth tiling" of segmentation inference (e.g. Huang et al., "Tiling and stitching segmentation output for
remote sensing", IGARSS 2018).

:class:`ProbabilityMosaic` accumulates weighted sums and weights in two tiled float32 GeoTIFFs on local disk,
one window at a time (read, add, write back: GDAL's block cache bounds the memory), and writes the result as
a Cloud-Optimized GeoTIFF block by block (:meth:`ProbabilityMosaic.write_cog`), so a scene of any size needs
about the memory of one window and one block row.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import numpy as np

from landslide import storage

NODATA = -1.0
"""Nodata of stitched probability rasters: pixels no window covered (the same as the tile-level scene rasters
of :mod:`landslide.inventory.maps`)."""

MIN_WEIGHT = 0.05
"""The blending weight at a window's very edge (relative to 1 in its interior): small, but never zero, so
that a pixel only one window covers (at the scene's border) still gets that window's probability."""


def window_offsets(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets (pixels) of windows of ``size`` that cover ``[0, length)``, neighbours overlapping by at
    least ``overlap`` pixels, evenly spread, the first at 0 and the last flush with the end (a ``length`` below
    ``size``: one window at 0, which reaches past the end). ValueError for a size below 1 or an overlap that
    leaves no stride (``0 <= overlap < size``)."""
    if size < 1 or length < 0:
        raise ValueError(f"window size must be positive and length non-negative, got {size} and {length}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size) = [0, {size}), got {overlap}")
    if length <= size:
        return [0]
    n = math.ceil((length - overlap) / (size - overlap))  # windows needed at the largest stride allowed
    last = length - size
    return [round(i * last / (n - 1)) for i in range(n)]


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """float32 ``(size, size)`` weights: 1 inside, falling along a half cosine to :data:`MIN_WEIGHT` over the
    ``overlap`` pixels at each edge (separable: the product of the row and column profiles)."""
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap  # pixel centres, 0..1 into the window
        edge = MIN_WEIGHT + (1 - MIN_WEIGHT) * 0.5 * (1 - np.cos(np.pi * t))
        ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        ramp[size - overlap:] = np.minimum(ramp[size - overlap:], edge[::-1])
    return np.outer(ramp, ramp).astype(np.float32)


class ProbabilityMosaic:
    """One scene's stitched probability raster, accumulated window by window on local disk.

    ``width`` x ``height`` pixels georeferenced by the affine ``transform`` in ``crs``; ``workdir`` holds the
    two accumulation rasters (a fresh temporary folder by default, removed by :meth:`close`). Use as a
    context manager."""

    def __init__(self, width: int, height: int, transform, crs, workdir: str | None = None, block: int = 512):
        import rasterio

        if width < 1 or height < 1:
            raise ValueError(f"mosaic size must be positive, got {width} x {height}")
        self.width, self.height, self.transform, self.crs = width, height, transform, crs
        self.block = block
        self._own = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="landslide-mosaic-")
        os.makedirs(self.workdir, exist_ok=True)
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
                   "crs": crs, "transform": transform, "tiled": True, "blockxsize": block, "blockysize": block,
                   "sparse_ok": True}
        # sums and weights start at 0 (sparse: blocks never written read as 0 and take no disk)
        self._sum = rasterio.open(os.path.join(self.workdir, "sum.tif"), "w+", **profile)
        self._weight = rasterio.open(os.path.join(self.workdir, "weight.tif"), "w+", **profile)
        self.windows = 0

    def __enter__(self) -> "ProbabilityMosaic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, col_off: int, row_off: int, probability: np.ndarray, weights: np.ndarray) -> None:
        """Blend one window in: ``probability`` and ``weights`` are ``(h, w)`` arrays whose top-left pixel is
        the scene's (``row_off``, ``col_off``); the parts outside the scene and the non-finite probabilities
        (nodata) are ignored. ValueError when the shapes differ."""
        from rasterio.windows import Window

        prob = np.asarray(probability, np.float32)
        w = np.asarray(weights, np.float32)
        if prob.shape != w.shape or prob.ndim != 2:
            raise ValueError(f"probability {prob.shape} and weights {w.shape} must be the same (h, w)")
        r0, c0 = max(row_off, 0), max(col_off, 0)
        r1, c1 = min(row_off + prob.shape[0], self.height), min(col_off + prob.shape[1], self.width)
        if r0 >= r1 or c0 >= c1:
            return
        prob = prob[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off]
        w = np.where(np.isfinite(prob), w[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off], 0).astype(np.float32)
        window = Window(c0, r0, c1 - c0, r1 - r0)
        total = self._sum.read(1, window=window) + np.nan_to_num(prob) * w
        weight = self._weight.read(1, window=window) + w
        self._sum.write(total, 1, window=window)
        self._weight.write(weight, 1, window=window)
        self.windows += 1

    def blocks(self):
        """``(window, probability)`` per block row of the stitched raster: the weighted mean, :data:`NODATA`
        where no window reached."""
        from rasterio.windows import Window

        for r in range(0, self.height, self.block):
            window = Window(0, r, self.width, min(self.block, self.height - r))
            total, weight = self._sum.read(1, window=window), self._weight.read(1, window=window)
            with np.errstate(invalid="ignore", divide="ignore"):
                yield window, np.where(weight > 0, total / weight, NODATA).astype(np.float32)

    def write_cog(self, uri: str) -> str:
        """Write the stitched probabilities to ``uri`` (local or remote) as a float32 Cloud-Optimized GeoTIFF
        (deflate, internal tiles, overviews, nodata :data:`NODATA`), block row by block row."""
        import rasterio
        from rasterio.shutil import copy as rio_copy

        plain = os.path.join(self.workdir, "stitched.tif")
        profile = {"driver": "GTiff", "width": self.width, "height": self.height, "count": 1, "dtype": "float32",
                   "crs": self.crs, "transform": self.transform, "nodata": NODATA, "tiled": True,
                   "blockxsize": self.block, "blockysize": self.block, "compress": "deflate"}
        with rasterio.open(plain, "w", **profile) as out:
            for window, data in self.blocks():
                out.write(data, 1, window=window)
        built = os.path.join(self.workdir, "cog.tif")
        rio_copy(plain, built, driver="COG", compress="deflate", blocksize=256, overview_resampling="average",
                 predictor=3)
        os.remove(plain)
        # the finished file appears whole or not at all: moved into place locally, streamed up otherwise
        if storage.is_remote(uri):
            with open(built, "rb") as src, storage.open_uri(uri, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
            os.remove(built)
        else:
            storage.makedirs(storage.parent(uri))
            shutil.move(built, uri + ".partial")
            os.replace(uri + ".partial", uri)
        return uri

    def close(self) -> None:
        """Close the accumulation rasters; remove the temporary folder this mosaic made."""
        for ds in (getattr(self, "_sum", None), getattr(self, "_weight", None)):
            if ds is not None and not ds.closed:
                ds.close()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)
