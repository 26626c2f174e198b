"""Safe image decoding: every image becomes an 8-bit RGB array or an :class:`ImageError` naming the reason.

Handles truncated/corrupt files, decompression bombs (a pixel limit checked from the header, before any
pixel is decoded), EXIF orientation, and modes seen in aerial imagery: CMYK, RGBA/LA (composited on
black, the usual nodata colour of tiles; transparent pixels are nodata), palette, grayscale, 1-bit and
16-bit/float (contrast-stretched to 8 bits between the 0.5th and 99.5th percentiles, like GIS viewers do).

TIFFs and 16-bit PNGs are decoded at full depth by GDAL (through rasterio) with the band rules of
:mod:`landslide.data.rasters` (Pillow would keep only the high byte of a 16-bit RGB PNG). Whatever a decoder
raises on a damaged file becomes an :class:`ImageError` naming the file, never another exception.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from landslide import storage
from landslide.data.rasters import stretch
from landslide.errors import ImageError, StorageError

DEFAULT_MAX_PIXELS = 64_000_000
"""Refuse images with more pixels than this (an 8000x8000 scene) unless told otherwise."""

DEFAULT_MAX_BYTES = 256 * 1024 * 1024

UNRECOGNISED_FORMAT = "not a recognised image format"
"""The :class:`ImageError` reason for bytes that are no image at all (as opposed to a damaged image)."""


def _to_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB uint8, valid mask or None): transparent pixels are nodata and composited on black."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        gray = stretch(arr, np.isfinite(arr))
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3] > 0
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB")), None if alpha.all() else alpha
    if mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, L, 1
    return np.asarray(img), None


@dataclass
class Decoded:
    """A decoded image: ``rgb`` ``(H, W, 3)`` uint8 and ``valid`` ``(H, W)`` bool (False where nodata:
    transparent, masked or non-finite pixels), or None when every pixel holds data."""

    rgb: np.ndarray
    valid: np.ndarray | None = None

    @property
    def nodata_fraction(self) -> float:
        """Share of pixels without data (0..1)."""
        return 0.0 if self.valid is None else float(1.0 - self.valid.mean())


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _needs_gdal(data: bytes) -> bool:
    """TIFFs (every photometric and bit depth) and 16-bit PNGs, which Pillow reduces to their high byte."""
    if data[:4] in _TIFF_MAGIC:
        return True
    return data[:8] == _PNG_MAGIC and len(data) > 24 and data[12:16] == b"IHDR" and data[24] == 16


def decode(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode image bytes into RGB uint8 plus its nodata mask, EXIF orientation applied (Pillow images)."""
    if not data:
        raise ImageError(name, "empty file")
    if _needs_gdal(data):
        from landslide.data.rasters import decode_raster

        rgb, valid = decode_raster(data, name, max_pixels)
        return _checked(Decoded(rgb, None if valid.all() else valid), name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError(name, f"invalid image size {width}x{height}")
            if width * height > max_pixels:
                raise ImageError(
                    name, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                    "(possible decompression bomb; raise max_pixels if the image is genuine)")
            img.load()  # the first frame of multi-frame files (GIF, MPO): later frames are never parsed
            img = ImageOps.exif_transpose(img)
            arr, valid = _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, UNRECOGNISED_FORMAT) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, f"decompression bomb refused ({exc})") from None
    except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, ValueError, TypeError, ... on bad files
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            message = "truncated file (" + message + ")"
        elif not isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
            message = f"{type(exc).__name__}: {message}"
        raise ImageError(name, f"corrupt image: {message[:300]}") from None
    return _checked(Decoded(arr, valid), name)


def _checked(decoded: Decoded, name: str) -> Decoded:
    arr = decoded.rgb
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, f"unexpected decoded shape {arr.shape}")
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        decoded.rgb = np.array(arr, order="C")
    return decoded


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into an ``(H, W, 3)`` uint8 RGB array (nodata black); see :func:`decode`."""
    return decode(data, name, max_pixels).rgb


def read_image(uri: str, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read and decode an image from a path or URI; storage problems become :class:`ImageError` too."""
    try:
        data = storage.read_bytes(uri, max_bytes=max_bytes)
    except StorageError as exc:
        raise ImageError(uri, str(exc).removeprefix(f"{uri}: ")) from None
    return decode_image(data, uri, max_pixels=max_pixels)


def encode_jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def encode_png(arr: np.ndarray) -> bytes:
    """Encode an RGB or grayscale array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def center_square_crop(arr: np.ndarray) -> np.ndarray:
    """Crop the largest centred square."""
    h, w = arr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return arr[top:top + side, left:left + side]


def resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize a square-or-not RGB array to ``size`` x ``size`` with antialiasing."""
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0))
