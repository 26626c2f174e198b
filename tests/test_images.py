"""Safe decoding of every kind of bad or unusual image."""

import io

import numpy as np
import pytest
from PIL import Image

from landslide.data.images import decode_image, read_image
from landslide.errors import ImageError


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(w=40, h=30) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[: h // 2, :, 1] = 200
    return Image.fromarray(arr)


def test_rgb_roundtrip():
    out = decode_image(_bytes(_rgb(), "PNG"))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8 and out.flags.writeable


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "RGBA", "LA", "P", "I;16", "I", "F"])
def test_modes_become_rgb(mode):
    base = _rgb()
    if mode in ("I;16", "I", "F"):
        arr = np.linspace(0, 4000, 40 * 30).reshape(30, 40)
        img = Image.fromarray(arr.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
        assert img.mode == mode
    else:
        img = base.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    out = decode_image(_bytes(img, fmt), f"x.{fmt.lower()}")
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    if mode in ("I;16", "I", "F"):  # contrast-stretched, not crushed to black
        assert out.max() == 255 and out.min() == 0


def test_rgba_transparent_is_black():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert decode_image(_bytes(img, "PNG")).max() == 0


def test_palette_with_transparency():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 255, 255] * 256)
    data = _bytes(img, "PNG", transparency=0)
    assert decode_image(data).max() == 0


def test_exif_rotation_applied():
    img = _rgb(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(_bytes(img, "JPEG", exif=exif.tobytes()))
    assert out.shape == (40, 30, 3)


def test_multiframe_gif_first_frame():
    frames = [_rgb().convert("P"), Image.new("P", (40, 30), 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue()).shape == (30, 40, 3)


def test_truncated_is_clear_error():
    data = _bytes(_rgb(200, 200), "JPEG")
    with pytest.raises(ImageError, match="x.jpg: corrupt image"):
        decode_image(data[: len(data) // 2], "x.jpg")


def test_garbage_and_empty():
    with pytest.raises(ImageError, match="not a recognised image format"):
        decode_image(b"this is not an image at all", "notes.png")
    with pytest.raises(ImageError, match="empty file"):
        decode_image(b"", "empty.png")


def test_decompression_bomb_refused_before_decoding():
    data = _bytes(Image.new("L", (9000, 9000)), "PNG")  # 81 Mpx, a few hundred kB on disk
    assert len(data) < 2_000_000
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(data, "bomb.png")
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(_bytes(_rgb(), "PNG"), "small.png", max_pixels=100)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(ImageError, match="missing.png: not found"):
        read_image(str(tmp_path / "missing.png"))
