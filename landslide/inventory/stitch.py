"""Overlapping windows stitched into one probability raster per scene, with memory that does not grow with
the scene: the building blocks of footprint sweeps (issue 21).

A footprint model sees a scene through windows of its input size. Predictions are least reliable near a
window's edges (the network sees no context beyond them), so windows overlap and each one's probabilities
are blended in with weights that fall towards its edges (:func:`blend_weights`): where windows overlap, the
weighted mean favours the window that sees a pixel in its interior, and seams vanish. This is the usual
"smooth tiling" of segmentation inference (e.g. Huang et al., "Tiling and stitching segmentation output for
remote sensing", IGARSS 2018).

:class:`ProbabilityMosaic` accumulates weighted sums and weights in memory for the rows that windows still
reach, and hands each block row on (to a plain GeoTIFF on local disk, and to a callback such as the footprint
tracer) as soon as no later window can touch it. Windows come in row order (as a sweep reads them), so memory
holds about one block row plus one window row of the scene's width however tall the scene is; the result is
written as a Cloud-Optimized GeoTIFF at the end (:meth:`ProbabilityMosaic.write_cog`).
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


def _cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ProbabilityMosaic:
    """One scene's stitched probability raster, blended window by window in a rolling in-memory band and
    written block row by block row to local disk.

    ``width`` x ``height`` pixels georeferenced by the affine ``transform`` in ``crs``; ``workdir`` holds the
    plain stitched GeoTIFF (a fresh temporary folder by default, removed by :meth:`close`). Windows must come
    in row order: a window may not start above a block row already handed on (ValueError); windows of one row
    may come in any order. ``on_block(top, probability)`` is called with each finished block row (``(rows,
    width)`` float32, :data:`NODATA` where no window reached), top to bottom. Use as a context manager."""

    def __init__(self, width: int, height: int, transform, crs, workdir: str | None = None, block: int = 512,
                 on_block=None):
        import rasterio

        if width < 1 or height < 1:
            raise ValueError(f"mosaic size must be positive, got {width} x {height}")
        self.width, self.height, self.transform, self.crs = width, height, transform, crs
        self.block, self.on_block = block, on_block
        self._own = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="landslide-mosaic-")
        os.makedirs(self.workdir, exist_ok=True)
        self._plain_path = os.path.join(self.workdir, "stitched.tif")
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
                   "crs": crs, "transform": transform, "nodata": NODATA, "tiled": True, "blockxsize": 256,
                   "blockysize": 256}
        self._plain = rasterio.open(self._plain_path, "w", **profile)
        self._top = 0  # the first row not yet handed on: row 0 of the band
        self._sum = np.zeros((2 * block, width), np.float32)  # the band: rows _top .. _top + len (grows if a
        self._weight = np.zeros((2 * block, width), np.float32)  # window is taller than a block)
        self.windows = 0

    def __enter__(self) -> "ProbabilityMosaic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _grow(self, rows: int) -> None:
        if rows > len(self._sum):
            extra = rows - len(self._sum)
            self._sum = np.vstack([self._sum, np.zeros((extra, self.width), np.float32)])
            self._weight = np.vstack([self._weight, np.zeros((extra, self.width), np.float32)])

    def _shift(self, rows: int) -> None:
        """Drop the band's first ``rows`` rows (handed on): the rest moves up, the freed rows are zeroed."""
        keep = len(self._sum) - rows
        for band in (self._sum, self._weight):
            band[:keep] = band[rows:]
            band[keep:] = 0

    def _flush(self, upto: int) -> None:
        """Hand on every whole block row above ``upto`` (and the last, partial one at the scene's end)."""
        from rasterio.windows import Window

        while self._top < self.height and (self._top + self.block <= upto or upto >= self.height):
            rows = min(self.block, self.height - self._top)
            self._grow(rows)
            total, weight = self._sum[:rows], self._weight[:rows]
            with np.errstate(invalid="ignore", divide="ignore"):
                prob = np.where(weight > 0, total / weight, NODATA).astype(np.float32)
            self._plain.write(prob, 1, window=Window(0, self._top, self.width, rows))
            if self.on_block is not None:
                self.on_block(self._top, prob)
            self._shift(rows)
            self._top += rows

    def add(self, col_off: int, row_off: int, probability: np.ndarray, weights: np.ndarray) -> None:
        """Blend one window in: ``probability`` and ``weights`` are ``(h, w)`` arrays whose top-left pixel is
        the scene's (``row_off``, ``col_off``); the parts outside the scene and the non-finite probabilities
        (nodata) are ignored. Block rows above this window's top are handed on first. ValueError when the
        shapes differ or the window reaches rows already handed on."""
        prob = np.asarray(probability, np.float32)
        w = np.asarray(weights, np.float32)
        if prob.shape != w.shape or prob.ndim != 2:
            raise ValueError(f"probability {prob.shape} and weights {w.shape} must be the same (h, w)")
        r0, c0 = max(row_off, 0), max(col_off, 0)
        r1, c1 = min(row_off + prob.shape[0], self.height), min(col_off + prob.shape[1], self.width)
        if r0 >= r1 or c0 >= c1:
            return
        if r0 < self._top:
            raise ValueError(f"window at row {row_off}: rows above {self._top} are already written; add windows "
                             "in row order")
        self._flush(r0)
        prob = prob[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off]
        w = np.where(np.isfinite(prob), w[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off], 0).astype(np.float32)
        self._grow(r1 - self._top)
        a, b = r0 - self._top, r1 - self._top
        self._sum[a:b, c0:c1] += np.nan_to_num(prob) * w
        self._weight[a:b, c0:c1] += w
        self.windows += 1

    def finish(self) -> None:
        """Hand on every remaining row (no window may be added afterwards)."""
        self._flush(self.height)

    def blocks(self):
        """``(window, probability)`` per block row of the stitched raster: the weighted mean, :data:`NODATA`
        where no window reached (after :meth:`finish`, read back from disk)."""
        import rasterio
        from rasterio.windows import Window

        self.finish()
        if not self._plain.closed:
            self._plain.close()
        with rasterio.open(self._plain_path) as ds:
            for r in range(0, self.height, self.block):
                window = Window(0, r, self.width, min(self.block, self.height - r))
                yield window, ds.read(1, window=window)

    def write_cog(self, uri: str) -> str:
        """Write the stitched probabilities to ``uri`` (local or remote) as a float32 Cloud-Optimized GeoTIFF
        (deflate, internal tiles, overviews, nodata :data:`NODATA`), from the plain raster on disk."""
        from rasterio.shutil import copy as rio_copy

        self.finish()
        if not self._plain.closed:
            self._plain.close()
        built = os.path.join(self.workdir, "cog.tif")
        # deflate at level 1: a third faster than the default level on probability maps, about the same size,
        # and readable by every GDAL/QGIS (ZSTD would be faster still, but not every reader has it); tiles are
        # compressed on every CPU this process may use (the model is idle while the COG is written)
        rio_copy(self._plain_path, built, driver="COG", compress="deflate", level=1, blocksize=256,
                 overview_resampling="average", predictor=3, num_threads=str(_cpus()))
        storage.put_file(built, uri)  # whole or not at all
        return uri

    def close(self) -> None:
        """Close the plain raster; remove the temporary folder this mosaic made."""
        plain = getattr(self, "_plain", None)
        if plain is not None and not plain.closed:
            plain.close()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)
