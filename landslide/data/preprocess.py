"""The study's manual preprocessing, automated: centre square crop, downscale so the side is at most
``max_side`` px (default 1000), write JPEG. Parallel, idempotent (existing outputs are skipped unless
``overwrite``), and every input that could not be converted is reported with its reason."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from landslide import storage
from landslide.data.images import DEFAULT_MAX_PIXELS, center_square_crop, encode_jpeg, read_image, resize
from landslide.data.manifest import IMAGE_SUFFIXES
from landslide.errors import DataError, ImageError


@dataclass(frozen=True)
class PreprocessOptions:
    max_side: int = 1000
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False


def _relative(uri: str, root: str) -> str:
    root = root.rstrip("/")
    return uri[len(root) + 1:] if uri.startswith(root + "/") else os.path.relpath(uri, root)


def output_uri(src_uri: str, src_root: str, dst_root: str) -> str:
    """Mirror the input's relative path under ``dst_root`` with a .jpg suffix."""
    rel = os.path.splitext(_relative(src_uri, src_root))[0] + ".jpg"
    return storage.join(dst_root, rel)


def process_one(src: str, dst: str, opts: PreprocessOptions) -> dict:
    """Convert one image; never raises for bad input (returns status ``failed`` with the reason)."""
    if not opts.overwrite and storage.exists(dst):
        return {"source": src, "output": dst, "status": "skipped_existing", "reason": ""}
    try:
        arr = center_square_crop(read_image(src, max_pixels=opts.max_pixels))
        side = arr.shape[0]
        if side > opts.max_side:
            arr = resize(arr, opts.max_side)
        storage.write_bytes(dst, encode_jpeg(arr, opts.quality))
    except ImageError as exc:
        return {"source": src, "output": "", "status": "failed", "reason": exc.reason}
    return {"source": src, "output": dst, "status": "written", "reason": "", "side": int(arr.shape[0])}


def _job(args: tuple[str, str, PreprocessOptions]) -> dict:
    return process_one(*args)


def preprocess(src_root: str, dst_root: str, opts: PreprocessOptions = PreprocessOptions(),
               workers: int | None = None, progress: bool = True) -> dict:
    """Convert every image below ``src_root`` into ``dst_root``; write ``preprocess_report.csv/json`` there."""
    if opts.max_side < 16:
        raise DataError(f"max_side={opts.max_side}: must be at least 16 px")
    if not storage.exists(src_root):
        raise DataError(f"{src_root}: input folder not found")
    sources = storage.list_files(src_root, IMAGE_SUFFIXES)
    if not sources:
        raise DataError(f"{src_root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    jobs = [(s, output_uri(s, src_root, dst_root), opts) for s in sources]
    workers = workers or min(os.cpu_count() or 1, 8)
    start = time.perf_counter()
    if workers <= 1:
        results = [_job(j) for j in tqdm(jobs, desc="preprocess", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_job, jobs, chunksize=8), total=len(jobs), desc="preprocess",
                                disable=not progress))
    frame = pd.DataFrame(results)
    counts = frame["status"].value_counts().to_dict()
    report = {"source": src_root, "destination": dst_root, "images": len(results),
              "written": int(counts.get("written", 0)), "skipped_existing": int(counts.get("skipped_existing", 0)),
              "failed": int(counts.get("failed", 0)), "max_side": opts.max_side, "quality": opts.quality,
              "seconds": round(time.perf_counter() - start, 2),
              "failures": frame[frame["status"] == "failed"][["source", "reason"]].to_dict("records")}
    storage.write_text(storage.join(dst_root, "preprocess_report.csv"), frame.to_csv(index=False))
    storage.write_json(storage.join(dst_root, "preprocess_report.json"), report)
    return report
