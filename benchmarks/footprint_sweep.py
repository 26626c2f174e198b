"""Footprint sweep throughput and memory, measured against the bare footprint model in the same run (issue 21).

Arms, on the same model, batch size and scene (one GeoTIFF of synthetic terrain with landslides):

- ``model_only``: ``FootprintPredictor.predict`` on prepared in-memory uint8 batches: the ceiling.
- ``footprint_sweep``: ``landslide sweep`` with the footprint model end to end: windows read from the GeoTIFF,
  predicted, stitched into the probability COG (accumulated on disk), traced block by block, measured, written.

The model is a U-Net trained for a few epochs on synthetic chips with true footprints (so it draws
landslide-shaped footprints on the scene, as a real model would). Throughput is in windows per second. Rounds interleave the arms and ratios are taken within a round,
after a warm-up sweep of a small scene (imports and first opens are a fixed cost, not throughput). Memory:
the sweep runs in a child process over regions of ``--memory-windows`` windows (default 1000 and 10000), made
of touching scenes of about 1000 windows each (a region grows by scenes), and reports its peak RSS (VmHWM).
Within a scene, memory grows with the scene's width (a band of rows), not its height.

    python -m benchmarks.footprint_sweep [--windows 1024] [--image-size 128] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, model_only_rate, write_result


def make_scene(path: Path, windows: int, size: int, overlap: float, seed: int = 0, east_m: float = 0.0
               ) -> tuple[str, int]:
    """A GeoTIFF (UTM 48N, 0.5 m, its west edge ``east_m`` metres east of 500 km E) whose window grid at
    ``size`` px and ``overlap`` has about ``windows`` windows, tiled with synthetic chips (a third with
    landslides); returns (URI, windows in the grid)."""
    import rasterio
    from rasterio.transform import from_origin

    from landslide.data.synthetic import make_chip
    from landslide.inventory.stitch import window_offsets

    stride = size - int(round(size * overlap))
    per_side = max(int(round(math.sqrt(windows))), 1)
    side = stride * (per_side - 1) + size
    rng = np.random.default_rng(seed)
    pool = [make_chip(rng, i % 3 == 0, size)[0] for i in range(24)]
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8", "crs": "EPSG:32648",
               "transform": from_origin(500000 + east_m, 3000000, 0.5, 0.5), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate"}
    from rasterio.windows import Window

    with rasterio.open(path, "w", **profile) as ds:
        k = 0
        for r in range(0, side, size):
            for c in range(0, side, size):
                chip = pool[k % len(pool)]
                k += 1
                h, w = min(size, side - r), min(size, side - c)
                ds.write(np.moveaxis(chip[:h, :w], -1, 0), window=Window(c, r, w, h))
    return str(path), len(window_offsets(side, size, size - stride)) ** 2


def make_model(out: Path, backbone: str, image_size: int, epochs: int = 4, seed: int = 0) -> str:
    """A footprint model trained briefly on synthetic chips with true footprints (the kind of terrain the scene
    is tiled with): its footprints are landslide-shaped blobs, as a trained model's are, not the speckle of an
    untrained decoder, so tracing and the merge see a realistic number of footprints. Returns the model folder."""
    from landslide.config import parse_config
    from landslide.data.synthetic import generate_dataset
    from landslide.demo import demo_footprint_config
    from landslide.training.run import run_training

    manifest = generate_dataset(str(out / "data"), n_per_class=40, size=image_size, seed=seed)
    raw = demo_footprint_config(manifest, str(out), seed=seed)
    raw["model"].update({"backbone": backbone, "image_size": image_size})
    raw["train"].update({"epochs": epochs, "progress": False})
    raw["eval"].update({"bootstrap": 0, "gallery_size": 0})
    return run_training(parse_config(raw, "benchmark footprint model"))["model_dir"]


def model_only(model: str, n: int, args) -> float:
    from landslide.inference.footprints import FootprintPredictor

    return model_only_rate(FootprintPredictor(model, "cuda" if args.gpu else "cpu"), n, args.batch_size, args.gpu)


def sweep_config(model: str, scene: str, out: str, args) -> dict:
    return {"name": "bench-footprints", "model": model, "tiles": {"source": scene}, "output": out,
            "batch_size": args.batch_size, "device": "cuda" if args.gpu else "cpu",
            "footprints": {"overlap": args.overlap, "block": 512}}


def footprint_sweep(model: str, scene: str, out: str, args) -> tuple[float, dict]:
    from landslide.config import SweepConfig, parse_config
    from landslide.inventory.sweep import run_sweep

    cfg = parse_config(sweep_config(model, scene, out, args), "bench", schema=SweepConfig)
    start = time.perf_counter()
    summary = run_sweep(cfg)
    seconds = time.perf_counter() - start
    scene_record = summary["per_scene"][0]
    return scene_record["windows"] / seconds, {"footprints": summary["footprints"], "seconds": seconds}


def make_region(folder: Path, windows: int, per_scene: int, size: int, overlap: float) -> tuple[str, int]:
    """A region of scenes of about ``per_scene`` windows each, side by side (west to east, touching), about
    ``windows`` windows in all: how a region grows. Returns (folder, windows in the grids)."""
    folder.mkdir(parents=True, exist_ok=True)
    total, east = 0, 0.0
    for i in range(max(1, round(windows / per_scene))):
        uri, n = make_scene(folder / f"scene{i:03d}.tif", min(per_scene, windows), size, overlap, seed=i,
                            east_m=east)
        import rasterio

        with rasterio.open(uri) as ds:
            east += ds.width * 0.5
        total += n
    return str(folder), total


def peak_rss_child(model: str, n: int, work: Path, args) -> dict:
    """Peak RSS (MiB) of a child process that sweeps a region of about ``n`` windows in scenes of
    ``--memory-scene-windows`` windows each (one scene for the smallest region)."""
    scene, windows = make_region(work / f"mem{n}", n, args.memory_scene_windows, args.memory_image_size,
                                 args.overlap)
    code = ("import json,re,sys,time;from landslide.config import SweepConfig,parse_config;"
            "from landslide.inventory.sweep import run_sweep;cfg=parse_config(json.loads(sys.argv[1]),'m',"
            "schema=SweepConfig);t=time.perf_counter();s=run_sweep(cfg);"
            "hwm=int(re.search(r'VmHWM:\\s+(\\d+)',open('/proc/self/status').read()).group(1));"
            "print(json.dumps({'windows':sum(r['windows'] for r in s['per_scene']),'scenes':s['scenes'],"
            "'seconds':time.perf_counter()-t,'footprints':s['footprints'],'peak_rss_mib':hwm/1024}))")
    cfg = sweep_config(model, scene, str(work / f"mem{n}-out"), args)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True,
                          cwd=REPO, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "windows_planned": windows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, default=1024)
    p.add_argument("--backbone", default="mobilenetv2_100")
    p.add_argument("--image-size", type=int, default=128, help="model input and window size")
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--memory-windows", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--memory-image-size", type=int, default=64, help="a small input keeps the 10k run short")
    p.add_argument("--memory-scene-windows", type=int, default=1000,
                   help="windows per scene of the memory regions (a region grows by scenes)")
    p.add_argument("--out")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-footprints-"))
    scene, windows = make_scene(work / "scene.tif", args.windows, args.image_size, args.overlap)
    model = make_model(work / "model", args.backbone, args.image_size)
    # a warm-up sweep of a small scene: the first sweep in a process imports the inventory writers and opens
    # GDAL drivers once; that fixed cost is not throughput and would fall on round 0 only
    warm, _ = make_scene(work / "warm.tif", 16, args.image_size, args.overlap, seed=1)
    footprint_sweep(model, warm, str(work / "warm-out"), args)
    rounds = []
    for r in range(args.rounds):
        before = model_only(model, windows, args)
        sweep, detail = footprint_sweep(model, scene, str(work / f"sweep{r}"), args)
        after = model_only(model, windows, args)
        ceiling = (before + after) / 2
        row = {"model_only": ceiling, "model_only_spread": abs(before - after) / ceiling,
               "footprint_sweep": sweep, "ratio": sweep / ceiling, **detail}
        print(f"round {r}: " + json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
        rounds.append(row)
    mem_model = make_model(work / "mem-model", args.backbone, args.memory_image_size)
    memory = {str(n): peak_rss_child(mem_model, n, work, args) for n in args.memory_windows}
    sizes = sorted(memory, key=int)
    result = {
        "description": "footprint sweep of one GeoTIFF scene (synthetic terrain) against the bare footprint "
                       "model, windows/s",
        "command": "python -m benchmarks.footprint_sweep " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": {"architecture": "unet", "backbone": args.backbone, "input_size": args.image_size,
                  "trained": "a few epochs on synthetic chips with true footprints",
                  "batch_size": args.batch_size, "device": "cuda" if args.gpu else "cpu"},
        "windows": windows, "overlap": args.overlap, "rounds": rounds,
        "median": {k: float(np.median([row[k] for row in rounds])) for k in ("model_only", "footprint_sweep",
                                                                              "ratio")},
        "target_ratio": 0.8,
        "memory": memory,
        "memory_growth": (memory[sizes[-1]]["peak_rss_mib"] / memory[sizes[0]]["peak_rss_mib"]
                          if len(sizes) > 1 else None),
    }
    write_result("footprint_sweep", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
