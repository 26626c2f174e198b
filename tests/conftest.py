"""Shared fixtures: tiny synthetic data, a tiny trained model, a real local GCS emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# No model hub here: make hub lookups fail at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def synth_manifest(tmp_path_factory) -> str:
    """24 synthetic 64-px chips (12 per class) with groups and lat/lon."""
    from landslide.data.synthetic import generate_dataset

    return generate_dataset(str(tmp_path_factory.mktemp("synth")), n_per_class=12, size=64, seed=1, block=2)


def tiny_config(manifest: str, out: str, **sections) -> dict:
    """A run config that trains the baseline CNN at 32 px in a few seconds."""
    cfg = {
        "name": "tiny", "output_dir": out,
        "data": {"train": manifest, "split": {"method": "group", "val_fraction": 0.25, "test_fraction": 0.25}},
        "model": {"backbone": "baseline_cnn", "pretrained": "none", "image_size": 32},
        "train": {"epochs": 2, "batch_size": 8, "progress": False, "early_stopping_patience": None},
        "eval": {"bootstrap": 50, "cam_max_images": 6, "gallery_size": 2},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


@pytest.fixture(scope="session")
def trained_run(synth_manifest, tmp_path_factory) -> dict:
    """A finished tiny training run (summary dict)."""
    from landslide.config import parse_config
    from landslide.training.run import run_training

    out = str(tmp_path_factory.mktemp("run"))
    return run_training(parse_config(tiny_config(synth_manifest, out)))


def write_footprint_data(folder, n: int = 32, size: int = 64, seed: int = 0) -> str:
    """Chips with bright blobs of random size and place as landslides, their masks, groups and regions (a
    manifest with ``mask_path``, in ``folder``)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        landslide = i % 2 == 0
        if landslide:
            h, w = rng.integers(12, 30, 2)
            r, c = rng.integers(0, size - h), rng.integers(0, size - w)
            image[r:r + h, c:c + w] = rng.integers(170, 230, (h, w, 3))
            mask[r:r + h, c:c + w] = 255
        Image.fromarray(image).save(folder / f"c{i}.png")
        Image.fromarray(mask).save(folder / f"m{i}.png")
        rows.append({"path": f"c{i}.png", "mask_path": f"m{i}.png" if landslide or i % 4 == 1 else "",
                     "label": "landslide" if landslide else "non_landslide", "group": f"g{i // 2}",
                     "region": "north" if i < n // 2 else "south"})
    pd.DataFrame(rows).to_csv(folder / "footprints.csv", index=False)
    return str(folder / "footprints.csv")


def footprint_config(manifest: str, out: str) -> dict:
    """The tiny footprint model's config: a U-Net on MobileNetV2 at 64 px, 3 epochs."""
    return tiny_config(manifest, out, model={"task": "segmentation", "backbone": "mobilenetv2_100",
                                             "architecture": "unet", "image_size": 64},
                       train={"epochs": 3, "lr": 0.003, "monitor": "val_iou"})


@pytest.fixture(scope="session")
def footprint_run(tmp_path_factory) -> dict:
    """A finished tiny footprint-model run: its summary, with ``manifest`` (chips with masks) and ``out``."""
    from landslide.config import parse_config
    from landslide.training.run import run_training

    manifest = write_footprint_data(tmp_path_factory.mktemp("footprint_data"))
    out = str(tmp_path_factory.mktemp("footprint_run"))
    return {**run_training(parse_config(footprint_config(manifest, out))), "manifest": manifest, "out": out}


FOOTPRINT_TREE = (16, 51882, 27639)
"""Zoom, column and row (XYZ) of the top-left tile of :func:`write_footprint_tree` (about 105.0 E, 27.1 N)."""


def write_footprint_tree(root):
    """An XYZ tree of 64-px PNG tiles, 3 columns x 2 rows from :data:`FOOTPRINT_TREE`, of dark noise with one
    bright blob across the border of columns 1 and 2 (a metatile border for metatiles of 2); tile (0, 1) is
    corrupt and tile (2, 1) missing. Returns ``root``."""
    import numpy as np
    from PIL import Image

    z, x0, y0 = FOOTPRINT_TREE
    world = np.random.default_rng(5).integers(40, 90, (128, 192, 3)).astype(np.uint8)
    world[20:46, 108:150] = 210
    for dx in range(3):
        for dy in range(2):
            if (dx, dy) == (2, 1):
                continue
            path = root / str(z) / str(x0 + dx) / f"{y0 + dy}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if (dx, dy) == (0, 1):
                path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
            else:
                Image.fromarray(np.ascontiguousarray(world[dy * 64:(dy + 1) * 64, dx * 64:(dx + 1) * 64])).save(path)
    return root


def write_tagged(manifest: str, name: str = "tagged.csv", leaky: bool = False, seed: int = 0) -> str:
    """A copy of ``manifest`` (same folder) with GLC-like tag columns, as ``landslide catalog join`` writes them:
    ``glc_setting`` (known for ~60% of chips of both classes, weakly related to the label), ``glc_category``
    (~60%, unrelated), ``glc_distance_km``
    (~50%), ``glc_size`` (80% of landslides: the size head's target); ``leaky`` adds ``glc_trigger``, known for
    every landslide and no other chip (the study's situation)."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(manifest)
    rng = np.random.default_rng(seed)
    n, slide = len(frame), (frame["label"] == "landslide").to_numpy()
    known = rng.random(n) < 0.6
    natural = rng.random(n) < np.where(slide, 0.7, 0.3)
    frame["glc_setting"] = np.where(known, np.where(natural, "natural_slope", "above_road"), None)
    frame["glc_category"] = np.where(rng.random(n) < 0.6, rng.choice(["landslide", "mudslide", "rock_fall"], n), None)
    frame["glc_distance_km"] = np.where(rng.random(n) < 0.5, rng.random(n) * 5, np.nan)
    frame["glc_size"] = np.where(slide & (rng.random(n) < 0.8), rng.choice(["small", "medium", "large"], n), None)
    if leaky:
        frame["glc_trigger"] = np.where(slide, rng.choice(["rain", "downpour"], n), None)
    out = os.path.join(os.path.dirname(manifest), name)
    frame.to_csv(out, index=False)
    return out


@pytest.fixture(scope="session")
def tagged_manifest(synth_manifest) -> str:
    """The synthetic manifest with tag columns (no leak)."""
    return write_tagged(synth_manifest)


# two categorical columns out of alphabetical order: their order is the encoding's and must survive the card
MULTIMODAL = {"tags": {"categorical": ["glc_setting", "glc_category"], "numeric": ["glc_distance_km"],
                       "min_count": 1},
              "size_head": {"classes": ["small", "medium", "large"]}}


@pytest.fixture(scope="session")
def multimodal_run(tagged_manifest, tmp_path_factory) -> dict:
    """A finished tiny multi-modal run (tags + size head; summary dict)."""
    from landslide.config import parse_config
    from landslide.training.run import run_training

    out = str(tmp_path_factory.mktemp("mmrun"))
    return run_training(parse_config(tiny_config(tagged_manifest, out, name="mm", model=MULTIMODAL)))


def two_page_tiff_without_width() -> bytes:
    """A 2-page TIFF whose second page has no ImageWidth tag (Pillow: 'Missing dimensions')."""
    import io
    import struct

    import numpy as np
    from PIL import Image

    pages = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (50, 200)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * struct.unpack_from("<H", data, first)[0])[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        if struct.unpack_from("<H", data, second + 2 + 12 * i)[0] == 256:
            struct.pack_into("<H", data, second + 2 + 12 * i, 65000)
    return bytes(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS emulator (gcp-storage-emulator) on 127.0.0.1; yields (endpoint, bucket)."""
    pytest.importorskip("gcp_storage_emulator")
    port, bucket = _free_port(), "landslide-test"
    proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1",
                             f"--port={port}", "--in-memory", f"--default-bucket={bucket}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("GCS emulator did not start within 30 s")
    endpoint = f"http://127.0.0.1:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    import gcsfs

    gcsfs.GCSFileSystem.clear_instance_cache()
    yield endpoint, bucket
    proc.terminate()
    proc.wait(timeout=10)
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    gcsfs.GCSFileSystem.clear_instance_cache()


def ray_submit(cluster: dict, module: str, *args: str, env_vars: dict | None = None, timeout: int = 400,
               wait: bool = True, submission_id: str | None = None) -> subprocess.CompletedProcess | subprocess.Popen:
    """``ray job submit --working-dir REPO -- python -m MODULE ARGS`` against the test cluster."""
    import json

    cmd = [cluster["ray"], "job", "submit", "--address", cluster["address"], "--working-dir", str(REPO)]
    if submission_id:
        cmd += ["--submission-id", submission_id]
    if env_vars:
        cmd += ["--runtime-env-json", json.dumps({"env_vars": env_vars})]
    cmd += ["--", "python", "-m", module, *args]
    if not wait:
        return subprocess.Popen(cmd, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=cluster["env"], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real local Ray head (``ray start --head``, 2 CPUs) with token authentication switched on.

    Yields a dict with the dashboard ``address`` for ``ray job submit``, the GCS ``gcs_address`` for drivers,
    and ``env``: the environment every client needs (the cluster's token, the venv first on PATH so a job's
    ``python`` is this interpreter).
    """
    pytest.importorskip("ray")
    import secrets
    import shutil
    import tempfile

    bindir = os.path.dirname(sys.executable)
    port, dash = _free_port(), _free_port()
    # Ray's socket paths must stay short: a temp dir under /tmp, not pytest's deep one
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = os.path.join(bindir, "ray")
    start = subprocess.run([ray_bin, "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
                            "--dashboard-host=127.0.0.1", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp}",
                            "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
    if start.returncode != 0:
        pytest.fail(f"ray start failed:\n{start.stdout}\n{start.stderr}")
    try:
        yield {"address": f"http://127.0.0.1:{dash}", "gcs_address": f"127.0.0.1:{port}", "env": env,
               "ray": ray_bin}
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def write_raster(path, data, crs="EPSG:32647", transform=None, **profile) -> str:
    """A GeoTIFF from ``(bands, H, W)`` data (default: UTM 47N, 0.5 m pixels)."""
    import rasterio
    from rasterio.transform import from_origin

    count, height, width = data.shape
    transform = transform or from_origin(500000, 3300000, 0.5, 0.5)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
                       crs=crs, transform=transform, **profile) as ds:
        ds.write(data)
    return str(path)


def sweep_config(model_dir: str, source: str, output: str, **extra):
    """A small sweep config (threshold 0.01: every scored tile positive); ``extra`` sections merge into it."""
    from landslide.config import SweepConfig, parse_config

    raw = {"name": "geo", "model": model_dir, "tiles": {"source": source}, "output": output, "batch_size": 4,
           "shard_size": 4, "read_threads": 1, "explain": {"enabled": False}, "threshold": 0.01}
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(raw, "test", schema=SweepConfig)
