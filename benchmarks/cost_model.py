"""The cost model of a regional sweep: what one CPU core and one GPU do per second, and the nodes needed to sweep
an area in a deadline (default: 10,000 km2 at 0.5 m GSD, 256-px tiles, in 10 minutes: ~610,000 tiles).

Measured here, in this run (one process, one thread each, so they are per-core rates):

- ``read_decode``: ``read_tiles`` on 256-px JPEG tiles from local disk (read, decode, resize to the model's input);
- ``model_cpu``: ``Predictor.predict`` on prepared uint8 batches with one torch thread.

Taken from earlier results, named in the output: the bare model's images/s on the lent GPU
(``results/gpu_tta.json``, measured at 224 px, scaled to the model's input by pixel count) and the sweep driver's
capacity at 1M tiles (``results/plan_scale.json``). Assumptions are listed in the JSON and in docs/sweeps.md.

    python -m benchmarks.cost_model [--area-km2 10000] [--gsd 0.5] [--tile-px 256] [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path


from benchmarks.common import RESULTS, write_result
from benchmarks.sweep_throughput import make_model, make_tiles


def per_core_rates(backbone: str, tile_px: int, input_px: int, n: int) -> dict:
    import torch

    from landslide.config import SweepConfig, parse_config
    from landslide.inference.predictor import Predictor
    from landslide.inventory.sweep import TileReader, read_tiles
    from landslide.inventory.tiles import build_index

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    tiles, desc = make_tiles(work / "tiles", n, tile_px)
    model = make_model(work / "model", backbone, input_px)
    cfg = parse_config({"model": model, "tiles": {"source": tiles}, "output": str(work / "o")}, "cost",
                       schema=SweepConfig)
    rows = build_index(tiles, "xyz")
    reader = TileReader.for_sweep(cfg, input_px)
    read_tiles(rows.head(16), reader)  # warm-up
    start = time.perf_counter()
    batch = read_tiles(rows, reader)
    read_rate = len(rows) / (time.perf_counter() - start)
    predictor = Predictor(model, "cpu", num_threads=1)
    images = batch["image"][:32]
    predictor.predict(images[:8])
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < 10 or done < 64:
        predictor.predict(images)
        done += len(images)
    model_rate = done / (time.perf_counter() - start)
    return {"tiles": desc, "read_decode_tiles_per_s_per_core": read_rate,
            "model_tiles_per_s_per_core": model_rate, "backbone": backbone, "input_px": input_px}


GPU_INPUT_PX = {"mobilenetv2_100": 224, "tf_efficientnet_b3": 300, "tf_efficientnet_lite0": 224}
"""The input sizes benchmarks/gpu_tta.py measured each backbone at."""


def gpu_rate(backbone: str, input_px: int) -> dict | None:
    """The bare model's images/s on the GPU of results/gpu_tta.json (``tta: none``), scaled to ``input_px``."""
    path = RESULTS / "gpu_tta.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    row = result.get("models", {}).get(backbone)
    if row is None or backbone not in GPU_INPUT_PX:
        return None
    measured_px = GPU_INPUT_PX[backbone]
    return {"device": result.get("machine", {}).get("gpu"), "measured_at": result.get("measured_at"),
            "measured_px": measured_px, "bare_model_images_per_s": row["none"],
            "scaled_images_per_s": row["none"] * (measured_px / input_px) ** 2}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--area-km2", type=float, default=10_000)
    p.add_argument("--gsd", type=float, default=0.5, help="m per pixel")
    p.add_argument("--tile-px", type=int, default=256)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--input-px", type=int, default=256, help="model input (tiles are resized to it)")
    p.add_argument("--tiles", type=int, default=512, help="tiles for the per-core measurements")
    p.add_argument("--cores-per-node", type=int, default=16)
    p.add_argument("--gpus-per-node", type=int, default=1)
    p.add_argument("--efficiency", type=float, default=0.7,
                   help="share of the summed per-core rates a node delivers end to end (Ray, the driver, I/O "
                        "waits); 0.7 is this repository's measured ratio of Ray sweeps to the bare model")
    p.add_argument("--startup-s", type=float, default=15.0, help="actor start-up, once per job")
    p.add_argument("--out")
    args = p.parse_args(argv)

    tile_km = args.tile_px * args.gsd / 1000
    tiles = math.ceil(args.area_km2 / tile_km**2)
    seconds = args.minutes * 60
    need = tiles / seconds
    rates = per_core_rates(args.backbone, args.tile_px, args.input_px, args.tiles)
    read, model = rates["read_decode_tiles_per_s_per_core"], rates["model_tiles_per_s_per_core"]
    gpu = gpu_rate(args.backbone, args.input_px)
    plan = json.loads((RESULTS / "plan_scale.json").read_text()) if (RESULTS / "plan_scale.json").exists() else None

    # fixed costs of one job, which more nodes do not shorten: actor start-up, planning and the inventory merge
    # on the driver (scaled linearly from the largest plan_scale run)
    fixed = {"actor_start_s": args.startup_s}
    if plan is not None:
        largest = max(plan["runs"].values(), key=lambda r: r["tiles_in_region"])
        scale = tiles / largest["tiles_in_region"]
        fixed.update(plan_s=largest["index_and_plan_s"] * scale, inventory_merge_s=largest["finalize_s"] * scale)
    sweep_s = seconds - sum(fixed.values())
    if sweep_s <= 0:
        raise SystemExit(f"the fixed costs ({sum(fixed.values()):.0f} s) exceed the deadline")
    need_sweeping = tiles / sweep_s
    # CPU-only: every tile needs read+decode and a forward pass on some core
    core_s_per_tile = 1 / read + 1 / model
    cpu_cores = math.ceil(need_sweeping * core_s_per_tile / args.efficiency)
    plans = {"cpu_only": {"cores": cpu_cores, "nodes": math.ceil(cpu_cores / args.cores_per_node),
                          "core_seconds_per_tile": core_s_per_tile}}
    if gpu:
        gpus = math.ceil(need_sweeping / (gpu["scaled_images_per_s"] * args.efficiency))
        read_cores = math.ceil(need_sweeping / read / args.efficiency)
        nodes = max(math.ceil(gpus / args.gpus_per_node), math.ceil((read_cores + gpus) / args.cores_per_node))
        plans["gpu"] = {"gpus": gpus, "read_cores": read_cores, "nodes": nodes,
                        "gpu_share_busy": need_sweeping / (gpus * gpu["scaled_images_per_s"] * args.efficiency)}
    result = {
        "question": f"{args.area_km2:g} km2 at {args.gsd:g} m, {args.tile_px}-px tiles, in {args.minutes:g} min",
        "tiles": tiles, "tiles_per_s_needed": need, "fixed_costs_s": fixed, "seconds_left_to_sweep": sweep_s,
        "tiles_per_s_while_sweeping": need_sweeping, "per_core": rates, "gpu": gpu,
        "driver": None if plan is None else {k: plan["runs"][k] for k in plan["runs"]},
        "plans": plans,
        "assumptions": {
            "efficiency": args.efficiency, "cores_per_node": args.cores_per_node,
            "gpus_per_node": args.gpus_per_node,
            "gpu_rate": "bare-model images/s from results/gpu_tta.json (fp32, batch 64, inputs on the GPU), scaled "
                        "by pixel count to the model's input; not a sweep measured end to end on a GPU",
            "reads": "JPEG tiles from local disk; object storage adds latency that read_threads must hide "
                     "(about 30-50 ms a request: ~50 requests in flight for 1,000 tiles/s), not CPU",
            "fixed_costs": "actor start-up (--startup-s, ~10-15 s measured here), planning and the inventory merge "
                           "(results/plan_scale.json, scaled linearly) come once per job and are taken off the "
                           "deadline before the rates are sized",
        },
    }
    write_result("cost_model", result, args.out)
    print(json.dumps({"tiles": tiles, "need": round(need, 1), "fixed_costs_s": fixed,
                      "need_while_sweeping": round(need_sweeping, 1), "per_core": rates, "gpu": gpu, "plans": plans},
                     indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
