"""What a raster's bands mean, and how they become the 8-bit RGB the models see.

One conversion for GeoTIFF/COG windows (sweeps), TIFF chips and 16-bit PNGs (training, evaluation, the
endpoint), done the way GIS software shows a raster:

- **Which bands.** A ``bands`` setting (1-based, 3 bands as R, G, B or 1 band as grey) wins. Otherwise the
  raster's colour interpretation: red/green/blue bands wherever they sit (a B, G, R, NIR GeoTIFF is read as
  bands 3, 2, 1), then band descriptions named red/green/blue, a palette band through its colour table, a
  grey band (with or without alpha). GDAL already turns CMYK, CIELab and YCbCr-JPEG GeoTIFFs into RGB(A), and
  1-bit images into a black/white palette; ``MINISWHITE`` grey is inverted. Three bands without any
  interpretation are read as R, G, B in file order (as QGIS does); a raster with 2 or 4+ bands and no
  interpretation is refused with a message naming ``tiles.bands``.
- **Nodata.** The raster's nodata value, alpha band or internal mask, and every non-finite value (NaN, ±inf)
  are nodata; a pixel is valid only where all the chosen bands are. Nodata pixels become black.
- **8 bits.** 8-bit data is used as is (``NBITS`` < 8 scaled up); any other type is stretched per band
  between its 0.5th and 99.5th percentiles over the valid pixels (a cumulative-count cut like QGIS's).

Errors: :class:`~landslide.errors.ImageError` for a raster that cannot be read or converted,
:class:`~landslide.errors.ConfigError` for a ``bands`` setting the raster cannot satisfy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from landslide.errors import ConfigError, ImageError


@dataclass(frozen=True)
class BandPlan:
    """How to read one raster: 1-based band indexes and how they become RGB."""

    indexes: tuple[int, ...]
    kind: str
    """``rgb`` (3 bands), ``gray`` (1 band) or ``palette`` (1 band through ``colormap``)."""
    source: str
    """Where the choice came from (for messages and reports): ``tiles.bands``, ``colour interpretation``, ..."""
    invert: bool = False
    """MINISWHITE grey: 0 is white."""
    colormap: dict | None = None
    nbits: int | None = None
    all_valid: bool = False
    """GDAL says every pixel of these bands is valid (no nodata value, mask band or alpha): reads need no mask."""


def band_plan(ds, bands: tuple[int, ...] | list[int] | None = None, name: str = "",
              setting: str | None = "tiles.bands") -> BandPlan:
    """The bands of an open rasterio dataset to show as RGB (see the module docstring). ``setting`` names the
    option that chooses bands where the caller has one; without it an unreadable band layout is an
    :class:`ImageError`."""
    import dataclasses

    from rasterio.enums import MaskFlags

    plan = _band_plan(ds, bands, name, setting)
    flags = ds.mask_flag_enums
    return dataclasses.replace(plan, all_valid=all(flags[i - 1] == [MaskFlags.all_valid] for i in plan.indexes))


def _band_plan(ds, bands, name: str, setting: str | None) -> BandPlan:
    count = ds.count
    nbits = _nbits(ds)
    if bands:
        bands = tuple(int(b) for b in bands)
        if len(bands) not in (1, 3):
            raise ConfigError(f"tiles.bands {list(bands)}: give 3 bands (R, G, B) or 1 (grey), 1-based")
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise ConfigError(f"tiles.bands {list(bands)}: {name or 'the raster'} has bands 1..{count}, not {bad}")
        return BandPlan(bands, "rgb" if len(bands) == 3 else "gray", "tiles.bands", nbits=nbits)
    interp = [c.name.lower() for c in ds.colorinterp]
    where = {c: i + 1 for i, c in reversed(list(enumerate(interp)))}
    if all(c in where for c in ("red", "green", "blue")):
        return BandPlan((where["red"], where["green"], where["blue"]), "rgb", "colour interpretation", nbits=nbits)
    descriptions = [(d or "").strip().lower() for d in ds.descriptions]
    named = {d: i + 1 for i, d in reversed(list(enumerate(descriptions))) if d}
    if all(c in named for c in ("red", "green", "blue")):
        return BandPlan((named["red"], named["green"], named["blue"]), "rgb", "band descriptions", nbits=nbits)
    if "palette" in where:
        i = where["palette"]
        try:
            colormap = ds.colormap(i)
        except ValueError:
            colormap = None
        if colormap:
            return BandPlan((i,), "palette", "colour table", colormap=colormap, nbits=nbits)
    data_bands = [i + 1 for i, c in enumerate(interp) if c != "alpha"]
    minis_white = ds.tags(ns="IMAGE_STRUCTURE").get("MINISWHITE", "").upper() == "YES"
    if len(data_bands) == 1:
        return BandPlan((data_bands[0],), "gray", "single band", invert=minis_white, nbits=nbits)
    if len(data_bands) == 3 and not any(c in ("red", "green", "blue") for c in interp):
        return BandPlan(tuple(data_bands), "rgb", "three bands in file order", nbits=nbits)
    shown = ", ".join(f"{i + 1}:{c}" for i, c in enumerate(interp))
    what = f"{count} bands ({shown}) and no colour interpretation that says which are red, green and blue"
    if setting is None:
        raise ImageError(name or "raster", f"{what}; save it as RGB (e.g. gdal_translate -b 3 -b 2 -b 1 for a "
                                           "B, G, R, NIR image)")
    raise ConfigError(f"{name or 'raster'}: {what}; set {setting} to them, 1-based (e.g. {setting}: [3, 2, 1] "
                      "for a B, G, R, NIR raster)")


def _nbits(ds) -> int | None:
    value = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS")
    try:
        return int(value) if value else None
    except ValueError:
        return None


def to_rgb(data: np.ma.MaskedArray, plan: BandPlan) -> tuple[np.ndarray, np.ndarray]:
    """Masked ``(bands, H, W)`` data read with ``plan.indexes`` -> (``(H, W, 3)`` uint8 RGB, ``(H, W)`` valid).

    Non-finite values are nodata; nodata pixels are black."""
    values = np.ma.getdata(data)
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    if values.dtype.kind == "f":
        valid &= np.isfinite(values).all(axis=0)
    if plan.kind == "palette":
        rgb = _palette(values[0], plan.colormap or {})
    elif values.dtype == np.uint8:
        rgb = np.moveaxis(values, 0, -1)
        if plan.nbits and plan.nbits < 8:
            rgb = (np.clip(rgb.astype(np.uint16), 0, 2 ** plan.nbits - 1) * 255 // (2 ** plan.nbits - 1)).astype(np.uint8)
    else:
        rgb = np.stack([stretch(b, valid) for b in values], axis=-1)
    if plan.invert:
        rgb = 255 - rgb
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    if not valid.all():
        rgb = np.where(valid[..., None], rgb, 0)
    if not rgb.flags.c_contiguous:  # bands -> pixel-interleaved: np.copyto into a fresh array is about four
        out = np.empty(rgb.shape, np.uint8)  # times faster than np.ascontiguousarray on (3, H, W) -> (H, W, 3)
        np.copyto(out, rgb, casting="unsafe")
        rgb = out
    return rgb.astype(np.uint8, copy=False), valid


def _palette(band: np.ndarray, colormap: dict) -> np.ndarray:
    size = max(int(band.max()) + 1 if band.size else 1, max(colormap, default=0) + 1)
    lut = np.zeros((size, 3), np.uint8)
    for value, rgba in colormap.items():
        lut[int(value)] = rgba[:3]
    return lut[np.clip(band.astype(np.int64), 0, size - 1)]


def stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One band to uint8 between its 0.5th and 99.5th percentiles over the valid (finite) pixels."""
    values = band[valid].astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(values, [0.5, 99.5])
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.zeros(band.shape) if hi <= lo else (band.astype(np.float64) - lo) / (hi - lo)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255 + 0.5).astype(np.uint8)


def decode_raster(data: bytes, name: str, max_pixels: int, bands=None) -> tuple[np.ndarray, np.ndarray]:
    """Image bytes GDAL reads (TIFF in every photometric GDAL knows, 16-bit PNG) -> (RGB uint8, valid mask).

    The first image of a multi-page file is read; a pixel count above ``max_pixels`` is refused from the
    header, before any pixel is decoded. Every decoder failure is an :class:`ImageError` naming ``name``."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as ds:
                if ds.width * ds.height > max_pixels:
                    raise ImageError(name, f"{ds.width}x{ds.height} = {ds.width * ds.height} pixels exceeds the "
                                           f"limit of {max_pixels} (possible decompression bomb; raise "
                                           "max_pixels if the image is genuine)")
                plan = band_plan(ds, bands, name, setting=None)
                return to_rgb(ds.read(list(plan.indexes), masked=True), plan)
    except (ImageError, ConfigError):
        raise
    except rasterio.errors.RasterioIOError as exc:
        raise ImageError(name, f"corrupt image: {str(exc).splitlines()[0][:200]}") from None
    except Exception as exc:  # GDAL raises several types for damaged files
        raise ImageError(name, f"corrupt image: {type(exc).__name__}: {str(exc)[:200]}") from None
