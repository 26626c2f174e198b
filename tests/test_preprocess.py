"""Preprocessing: crop, downscale, JPEG, idempotence, failure report."""

import json

import numpy as np
from PIL import Image

from landslide.data.preprocess import PreprocessOptions, preprocess


def test_preprocess_folder(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "landslide").mkdir(parents=True)
    (src / "non_landslide").mkdir()
    Image.fromarray(np.full((300, 500, 3), 120, np.uint8)).save(src / "landslide" / "wide.png")
    Image.fromarray(np.full((80, 60, 3), 50, np.uint8)).save(src / "non_landslide" / "small.tif")
    (src / "non_landslide" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = preprocess(str(src), str(dst), PreprocessOptions(max_side=200), workers=2, progress=False)
    assert report["written"] == 2 and report["failed"] == 1
    assert report["failures"][0]["source"].endswith("broken.jpg") and "image" in report["failures"][0]["reason"]
    with Image.open(dst / "landslide" / "wide.jpg") as im:
        assert im.size == (200, 200) and im.format == "JPEG"
    with Image.open(dst / "non_landslide" / "small.jpg") as im:
        assert im.size == (60, 60)  # cropped to square, never upscaled
    saved = json.loads((dst / "preprocess_report.json").read_text())
    assert saved["failed"] == 1
    again = preprocess(str(src), str(dst), PreprocessOptions(max_side=200), workers=1, progress=False)
    assert again["written"] == 0 and again["skipped_existing"] == 2
