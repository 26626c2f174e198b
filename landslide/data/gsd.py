"""Ground sampling distance (GSD, metres per pixel) of model inputs, and images resampled to a model's GSD.

A chip of ``side`` pixels at ``gsd_m`` shown to a model at ``input_size`` pixels is seen at
``gsd_m * side / input_size`` m/px: the *input GSD*. A model trained on 128-px UAV chips at 0.5 m sees 0.5 m
per input pixel; one trained on ~270-px satellite crops at 0.8 m sees ~1.7 m. Objects then appear at another
scale on imagery of another GSD. :func:`resample_to_gsd` shows an image at the model's input GSD instead:
resampled by ``gsd_m / target``, then its centre (an image covering more ground than the model's window) or
the image mirrored at its borders (one covering less) fills the model's window.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


MAX_RESAMPLING = 64
"""The largest factor by which an image is enlarged or shrunk to match a GSD; beyond it the GSDs are almost
certainly wrong (a unit mix-up) rather than a real change of sensor."""


SAME_SCALE = 1.25
"""Two GSDs within this factor of each other count as the same scale (25 %); beyond it evaluations and sweeps
say so once."""


def same_scale(gsd_m: float, other_m: float) -> bool:
    """Whether two GSDs (m/px) are within :data:`SAME_SCALE` of each other."""
    return 1 / SAME_SCALE <= gsd_m / other_m <= SAME_SCALE


def input_gsd(gsd_m: float, width: int, height: int, input_size: int) -> float:
    """The GSD (m/px) at which a ``width`` x ``height`` chip at ``gsd_m`` reaches a model resized to
    ``input_size`` pixels (geometric mean of the two axes)."""
    return gsd_m * math.sqrt(width * height) / input_size


def resample_to_gsd(image: np.ndarray, gsd_m: float, target_gsd_m: float, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` at ``gsd_m`` -> uint8 ``(size, size, 3)`` at ``target_gsd_m`` (both m/px, > 0):
    resampled (PIL, Lanczos with antialiasing when shrinking, bicubic when enlarging), then centre-cropped to
    ``size`` where larger and mirrored at the borders (numpy ``reflect``, repeated as needed; the image in the
    centre) where smaller.
    ValueError for a non-positive GSD."""
    if not (0 < gsd_m < math.inf and 0 < target_gsd_m < math.inf):
        raise ValueError(f"GSD must be positive, got {gsd_m} and {target_gsd_m} m/px")
    scale = gsd_m / target_gsd_m
    if not 1 / MAX_RESAMPLING <= scale <= MAX_RESAMPLING:
        raise ValueError(f"resampling from {gsd_m:g} to {target_gsd_m:g} m/px is a factor {scale:.3g}, beyond "
                         f"1/{MAX_RESAMPLING}..{MAX_RESAMPLING}")
    h, w = image.shape[:2]
    if scale > 1:  # enlarging: only the centre that fills the window is resampled (bounded memory)
        need = math.ceil(size / scale) + 2
        top, left = max(0, (h - need) // 2), max(0, (w - need) // 2)
        image = image[top:top + need, left:left + need]
        h, w = image.shape[:2]
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        method = Image.LANCZOS if scale < 1 else Image.BICUBIC
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), method, reducing_gap=None))
    return centre_window(image, size)


def centre_window(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W, C)`` -> ``(size, size, C)`` at the same resolution: the centre ``size`` x ``size`` pixels
    where the image is larger, the image mirrored at its borders (numpy ``reflect``, repeated as needed; the
    image in the centre) where it is smaller."""
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    image = image[top:top + size, left:left + size]
    ph, pw = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if ph or pw:  # numpy reflects as often as needed; the image stays in the centre
        image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
    return np.ascontiguousarray(image[:size, :size])


def pixel_size(uri: str) -> tuple[int, int] | None:
    """(width, height) from the image header (no decoding); None when unreadable."""
    from landslide import storage

    try:
        with storage.open_uri(uri) as f, Image.open(f) as img:
            return img.size
    except Exception:  # unreadable chips are reported by the data loader, not here
        return None


def chip_size(frame, i: int) -> tuple[int, int] | None:
    """(width, height) in pixels of row ``i`` of a manifest ``frame``: from its ``width``/``height`` columns
    where given, else from the image's header; None when unknown."""
    w = frame["width"].iloc[i] if "width" in frame.columns else float("nan")
    h = frame["height"].iloc[i] if "height" in frame.columns else float("nan")
    if w > 0 and h > 0:
        return int(w), int(h)
    return pixel_size(frame["uri"].iloc[i])


def input_gsd_summary(frame, input_size: int) -> dict | None:
    """The input GSD (:func:`input_gsd`, m/px) of the chips of a manifest ``frame`` that have ``gsd_m``: median
    and 10th–90th percentiles, and how many chips it rests on. Sizes come from ``width``/``height`` columns
    where given, else from each image's header. None when no chip has a GSD."""
    if "gsd_m" not in frame.columns or frame["gsd_m"].isna().all():
        return None
    values = []
    for i, (uri, g) in enumerate(zip(frame["uri"], frame["gsd_m"])):
        if not g > 0:
            continue
        found = chip_size(frame, i)
        if found is None:
            continue
        values.append(input_gsd(float(g), *found, input_size))
    if not values:
        return None
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"median_m": float(p50), "p10_m": float(p10), "p90_m": float(p90), "chips": len(values),
            "input_size": input_size}


def raster_gsd_m(crs, transform, width: int, height: int) -> float | None:
    """A raster's GSD in metres per pixel (geometric mean of the two axes) from its ``rasterio`` CRS and affine
    ``transform``: in a projected CRS the pixel size times the CRS's linear unit (metres, US survey feet, ...);
    in a geographic CRS, and in Mercator projections (Web Mercator EPSG:3857 of XYZ/TMS tiles, whose scale
    grows as 1/cos(latitude): a nominal 1 m pixel covers 0.5 m of ground at 60°), the geodesic size on the
    WGS84 ellipsoid (pyproj) of the centre pixel. None without a CRS or for a degenerate transform."""
    if crs is None:
        return None
    a, b, d, e = transform.a, transform.b, transform.d, transform.e
    if crs.is_projected and not _mercator(crs):
        factor = crs.linear_units_factor[1]
        area = abs(a * e - b * d)
        return math.sqrt(area) * factor if area > 0 else None
    from pyproj import Geod, Transformer

    x, y = transform * (width / 2, height / 2)
    x1, y1 = transform * (width / 2 + 1, height / 2)
    x2, y2 = transform * (width / 2, height / 2 + 1)
    if crs.is_projected:  # a Mercator: measure the centre pixel on the ellipsoid
        to_lonlat = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
        (x, x1, x2), (y, y1, y2) = to_lonlat.transform([x, x1, x2], [y, y1, y2])
    geod = Geod(ellps="WGS84")
    dx = geod.inv(x, y, x1, y1)[2]
    dy = geod.inv(x, y, x2, y2)[2]
    return math.sqrt(dx * dy) if dx > 0 and dy > 0 else None


def _mercator(crs) -> bool:
    """A projected CRS whose projection is a Mercator (EPSG:3857, EPSG:3395, ...)."""
    from pyproj import CRS

    op = CRS.from_wkt(crs.to_wkt()).coordinate_operation
    return op is not None and "mercator" in op.method_name.lower() and "transverse" not in op.method_name.lower()


WEB_MERCATOR_GSD0_M = 2 * math.pi * 6378137.0 / 256
"""GSD (m/px) of a 256-px Web Mercator tile at zoom 0 on the equator: 156543.03 m."""


def xyz_gsd_m(zoom: int, lat: float, tile_px: int = 256) -> float:
    """Ground size of a pixel of a Web Mercator (XYZ/TMS) tile of ``tile_px`` pixels at ``zoom`` and latitude
    ``lat`` (degrees): ``156543.03 x cos(lat) / 2**zoom x 256 / tile_px``."""
    return WEB_MERCATOR_GSD0_M * math.cos(math.radians(lat)) / 2 ** zoom * 256 / tile_px
