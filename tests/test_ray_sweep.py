"""Sweeps as Ray Data jobs on a real local Ray cluster, with tiles, model and inventory in the GCS emulator:
corrupt tiles, a job stopped midway and submitted again."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
import yaml
from conftest import ray_submit

pytest.importorskip("ray")


def _pids(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (excluding `ray job submit` clients)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmdline and "job submit" not in cmdline:
                pids.append(int(entry.name))
    return pids


def _parquet(fs, path: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(fs.cat(path))).to_pandas()


def test_sweep_job_in_gcs_survives_corrupt_tiles_and_a_stop(ray_cluster, gcs_emulator, trained_run, tmp_path):
    import gcsfs

    from landslide.config import SweepConfig, parse_config
    from landslide.data.synthetic import generate_region
    from landslide.inventory.sweep import run_sweep

    endpoint, bucket = gcs_emulator
    fs = gcsfs.GCSFileSystem()
    region = generate_region(str(tmp_path / "region"), cols=8, rows=6, tile_size=64, seed=5, geotiff=False)
    fs.put(str(tmp_path / "region"), f"{bucket}/region", recursive=True)
    fs.put(trained_run["model_dir"], f"{bucket}/model", recursive=True)
    truth = pd.read_csv(region["truth"])
    # the sweep's bbox: the first six of eight tile columns
    cols = sorted(truth["west"].unique())
    bbox = [float(v) for v in (cols[0], truth["south"].min(), cols[6], truth["north"].max())]
    inside = truth[truth["west"] < cols[6]]
    corrupt = inside["tile_id"].iloc[[3, 20]].tolist()
    fs.pipe(f"{bucket}/region/xyz/{corrupt[0]}.jpg", fs.cat(f"{bucket}/region/xyz/{corrupt[0]}.jpg")[:200])
    fs.pipe(f"{bucket}/region/xyz/{corrupt[1]}.jpg", b"<html>not found</html>")

    raw = {"name": "gcs-sweep", "model": f"gs://{bucket}/model",
           "tiles": {"source": f"gs://{bucket}/region/xyz", "zoom": 19}, "region": {"bbox": bbox},
           "output": f"gs://{bucket}/sweeps/a", "batch_size": 2, "shard_size": 1, "threshold": 0.01,
           "ray": {"inference_actors": 1, "read_concurrency": 1, "fuse_reads": False}}
    fs.pipe(f"{bucket}/configs/sweep.yaml", yaml.safe_dump(raw).encode())
    env_vars = {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    args = ("--config", f"gs://{bucket}/configs/sweep.yaml")

    # kill the job's driver (as a lost head node would) as soon as its first shards are in the bucket
    proc = ray_submit(ray_cluster, "ray_jobs.sweep", *args, env_vars=env_vars, wait=False)
    shards = f"{bucket}/sweeps/a/shards"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        if fs.exists(shards) and len(fs.ls(shards)) >= 1:
            break
        time.sleep(0.1)
    drivers = _pids("ray_jobs.sweep")
    assert drivers, "no sweep driver running"
    for pid in drivers:
        os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    fs.invalidate_cache()
    done_before = len(fs.ls(shards))
    assert 1 <= done_before < 36, f"the job was not stopped midway ({done_before} shards)\n{out[-3000:]}"
    assert not fs.exists(f"{bucket}/sweeps/a/inventory.parquet")

    again = ray_submit(ray_cluster, "ray_jobs.sweep", *args, env_vars=env_vars)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert f"resuming: {done_before} of 36 shards already written" in again.stdout
    assert "36 tiles in" in again.stdout and "34 ok, 2 failed" in again.stdout
    # reads ran as their own operator, as asked (Ray's optimizer would fuse them into the actors with these
    # resources)
    assert "Ray Data operators: FromItems | MapBatches(read_shards) | MapBatches(InferenceActor)" in again.stdout

    inv = _parquet(fs, f"{bucket}/sweeps/a/inventory.parquet")
    assert len(inv) == 36 and inv["tile_id"].is_unique and set(inv["tile_id"]) == set(inside["tile_id"])
    failed = inv.set_index("tile_id").loc[corrupt]
    assert (failed["status"] == "error").all()
    assert "truncated" in failed["reason"].iloc[0] and "not a recognised image format" in failed["reason"].iloc[1]
    merged = inv.merge(inside, on="tile_id", suffixes=("", "_truth"))
    for side in ("west", "south", "east", "north"):
        np.testing.assert_allclose(merged[side], merged[f"{side}_truth"], rtol=0, atol=1e-12)
    summary = json.loads(fs.cat(f"{bucket}/sweeps/a/summary.json"))
    assert summary["tiles_in"] == 36 == summary["tiles_ok"] + summary["tiles_nodata"] + summary["tiles_failed"]
    assert summary["tiles_this_run"] == 36 - done_before
    fc = json.loads(fs.cat(f"{bucket}/sweeps/a/inventory.geojson"))
    assert len(fc["features"]) == summary["positives"] == 34  # threshold 0.01: every readable tile
    for f in fc["features"][:5]:
        row = merged.set_index("tile_id").loc[f["properties"]["tile_id"]]
        box = shapely.box(row.west, row.south, row.east, row.north)  # GeoJSON coordinates are rounded to 1e-7
        assert shapely.hausdorff_distance(shapely.geometry.shape(f["geometry"]), box) < 1e-7
        assert fs.exists(f"{bucket}/sweeps/a/{f['properties']['cam']}")

    # the same sweep in one process, without Ray, gives the same inventory
    local = parse_config({**raw, "output": str(tmp_path / "local")}, "local", schema=SweepConfig)
    run_sweep(local)
    ref = pq.read_table(tmp_path / "local" / "inventory.parquet").to_pandas()
    pd.testing.assert_frame_equal(ref.drop(columns="geometry"), inv.drop(columns="geometry"), atol=1e-6)

    # adapted without labels (AdaBN on the driver, actors load the adapted model from the bucket; prior shift
    # when the inventory is written), with reads fused into the actors (ray.fuse_reads: auto, CPU-only actors:
    # one operator): the same inventory as the local sweep with the same options
    adapt = ["--set", "ray.fuse_reads=auto", "--set", "adapt.batchnorm=true", "--set", "adapt.batchnorm_tiles=12", "--set", "adapt.prior=true",
             "--set", "threshold=null", "--set", f"output=gs://{bucket}/sweeps/adapted"]
    adapted = ray_submit(ray_cluster, "ray_jobs.sweep", *args, *adapt, env_vars=env_vars)
    assert adapted.returncode == 0, adapted.stdout[-4000:] + adapted.stderr[-2000:]
    assert "Ray Data operators: FromItems | MapBatches(InferenceActor)" in adapted.stdout
    card = json.loads(fs.cat(f"{bucket}/sweeps/adapted/adapted_model/model_card.json"))
    # 12 tiles drawn, the corrupt ones among them unreadable
    assert card["adaptation"]["sample_tiles"] == 12 and 10 <= card["adaptation"]["images"] <= 12
    assert f"BatchNorm layers re-estimated on {card['adaptation']['images']} tiles" in adapted.stdout
    assert "prior shift: landslide share estimated" in adapted.stdout
    ray_inv = _parquet(fs, f"{bucket}/sweeps/adapted/inventory.parquet")
    assert (ray_inv["model_version"] == card["weights_sha256"][:12]).all()
    local = parse_config({**raw, "output": str(tmp_path / "local_adapted"), "threshold": None,
                          "adapt": {"batchnorm": True, "batchnorm_tiles": 12, "prior": True}}, "local",
                         schema=SweepConfig)
    run_sweep(local)
    ref = pq.read_table(tmp_path / "local_adapted" / "inventory.parquet").to_pandas()
    # the same statistics up to float rounding (thread counts differ), hence each its own weights hash
    local_card = json.load(open(tmp_path / "local_adapted" / "adapted_model" / "model_card.json"))
    assert (ref["model_version"] == local_card["weights_sha256"][:12]).all()
    pd.testing.assert_frame_equal(ref.drop(columns=["geometry", "model_version"]),
                                  ray_inv.drop(columns=["geometry", "model_version"]), atol=1e-5)


def test_sweep_job_fails_fast_on_impossible_resources(ray_cluster, trained_run, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    # a checkpoint whose card names another backbone than its weights were trained as: the driver finds out
    # (building the model on the meta device) before any actor starts
    mismatched = tmp_path / "mismatched"
    shutil.copytree(trained_run["model_dir"], mismatched)
    card = json.loads((mismatched / "model_card.json").read_text())
    card["backbone"] = "tf_efficientnet_lite0" if card["backbone"] != "tf_efficientnet_lite0" else "mobilenetv2_100"
    (mismatched / "model_card.json").write_text(json.dumps(card))
    cfg = {"model": trained_run["model_dir"], "tiles": {"source": str(tmp_path / "none")}, "output": str(tmp_path / "o")}
    for name, extra, needle in (("gpu", {"ray": {"gpus_per_actor": 1}}, "GPU: need 1, cluster has 0"),
                                ("cpu", {"ray": {"inference_actors": 2, "fuse_reads": False}},
                                 "no room for a read task"),
                                ("card", {"model": str(mismatched)}, "weights do not match the model its card")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**cfg, **extra}))
        proc = subprocess.run([sys.executable, "-m", "ray_jobs.sweep", "--address", ray_cluster["gcs_address"],
                               "--config", str(path)], env=ray_cluster["env"], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_errors_raised_in_ray_workers_become_the_library_s_one_line():
    """A task's error (RayTaskError, also an instance of the original class) and an actor that died in its
    constructor (ActorDiedError, which keeps only the remote traceback as text) both give back the library's
    error, its class and its one line; anything else is left alone."""
    import ray.exceptions

    from landslide.errors import CheckpointError, DataError
    from ray_jobs.common import landslide_error

    task = ray.exceptions.RayTaskError("read_batch", "Traceback ...", DataError("tile 19/1/2: truncated JPEG"))
    found = landslide_error(task.as_instanceof_cause())
    assert type(found) is DataError and str(found) == "tile 19/1/2: truncated JPEG"
    died = ray.exceptions.ActorDiedError()
    died.error_msg = ("The actor died because of an error raised in its creation task, \x1b[36mray::MapWorker("
                      "MapBatches(InferenceActor)).__init__()\x1b[39m (pid=1)\nTraceback (most recent call last):\n"
                      '  File "checkpoint.py", line 191\nlandslide.errors.CheckpointError: gs://b/m/model.safetensors:'
                      " weights do not match\n")
    wrapped = RuntimeError("execution failed")
    wrapped.__cause__ = died
    found = landslide_error(wrapped)
    assert type(found) is CheckpointError and str(found) == "gs://b/m/model.safetensors: weights do not match"
    assert landslide_error(RuntimeError("landslide.errors.NoSuchError: x")) is None
    assert landslide_error(ValueError("plain")) is None


def test_footprint_sweep_job_of_an_xyz_tree_in_gcs(ray_cluster, gcs_emulator, footprint_run, tmp_path):
    """A footprint model sweeps an XYZ tree in the GCS emulator as a Ray job: metatiles in an actor pool, a corrupt
    tile recorded, the blob across a metatile border one footprint; the inventory equals the one-process
    sweep's, and a resubmitted job keeps every finished scene."""
    import gcsfs
    from conftest import FOOTPRINT_TREE, write_footprint_tree

    from landslide.config import SweepConfig, parse_config
    from landslide.inventory.sweep import run_sweep

    endpoint, bucket = gcs_emulator
    fs = gcsfs.GCSFileSystem()
    tree = write_footprint_tree(tmp_path / "tree")
    fs.put(str(tree), f"{bucket}/fptree", recursive=True)
    fs.put(footprint_run["model_dir"], f"{bucket}/fpmodel", recursive=True)
    z = FOOTPRINT_TREE[0]
    raw = {"name": "gcs-footprints", "model": f"gs://{bucket}/fpmodel",
           "tiles": {"source": f"gs://{bucket}/fptree", "zoom": z}, "output": f"gs://{bucket}/fpsweeps/a",
           "batch_size": 4, "footprints": {"block": 64, "metatile": 2}, "ray": {"inference_actors": 1}}
    fs.pipe(f"{bucket}/configs/footprints.yaml", yaml.safe_dump(raw).encode())
    env_vars = {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    args = ("--config", f"gs://{bucket}/configs/footprints.yaml")
    first = ray_submit(ray_cluster, "ray_jobs.sweep", *args, env_vars=env_vars)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "3 scenes (xyz) in the region, 3 to sweep" in first.stdout and "1 of 5 tiles unreadable" in first.stdout
    fs.invalidate_cache()
    inv = _parquet(fs, f"{bucket}/fpsweeps/a/footprints.parquet")
    assert inv["scenes"].str.contains(",").sum() == 1  # the blob across the metatile border, merged
    summary = json.loads(fs.cat(f"{bucket}/fpsweeps/a/summary.json"))
    assert summary["scenes_swept_this_run"] == 3 and summary["footprints"] == len(inv)

    local = run_sweep(parse_config({**raw, "tiles": {"source": str(tree), "zoom": z},
                                    "output": str(tmp_path / "local")}, "local", schema=SweepConfig))
    ref = pq.read_table(tmp_path / "local" / "footprints.parquet").to_pandas()
    assert local["footprints"] == len(inv)
    pd.testing.assert_frame_equal(ref.drop(columns="geometry"), inv.drop(columns="geometry"), atol=1e-5)

    again = ray_submit(ray_cluster, "ray_jobs.sweep", *args, env_vars=env_vars)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert "resuming: 3 of 3 scenes already swept" in again.stdout and "0 to sweep" in again.stdout


def test_shard_items_carry_each_shard_s_rows_and_nothing_else():
    """The Ray pipeline's items: one per pending shard, its index rows intact (types, order, the short last
    shard), whatever shards are skipped."""
    from ray_jobs.sweep import TILE_COLUMNS, shard_items, shard_rows

    n, size = 1030, 256
    tiles = pd.DataFrame({"tile_id": [f"19/{i}/7" for i in range(n)], "uri": [f"gs://b/19/{i}/7.jpg" for i in range(n)],
                          "window": [""] * n, "west": np.linspace(-180, 179, n), "south": -1.0, "east": 0.5,
                          "north": 1.0, "shard": np.arange(n) // size})
    pending = [0, 2, 4]  # 1 and 3 finished in an earlier run; 4 is the short last shard
    items = shard_items(tiles, pending, size)
    batch = {"shard": np.array([i["shard"] for i in items]), "rows": np.array([i["rows"] for i in items], object)}
    got = dict(shard_rows(batch))
    assert sorted(got) == pending
    for shard, rows in got.items():
        expected = tiles[tiles["shard"] == shard][TILE_COLUMNS].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected)
    assert len(got[4]) == n - 4 * size
