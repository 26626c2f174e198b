"""Sweep throughput and memory, measured against the bare model in the same run.

Arms, on the same model, batch size and tiles (an XYZ tree on local disk):

- ``model_only``: ``Predictor.predict`` on prepared in-memory uint8 batches: the ceiling.
- ``local_sweep``: ``landslide sweep`` end to end (index, read, decode, model, shard and inventory writes).
- ``ray_sweep`` (``--ray``): ``ray_jobs.sweep`` on a local Ray instance (read tasks + an actor pool).
- ``naive_loop``: one process, tile by tile: read, decode, resize, predict with batch size 1.

Rounds interleave the arms and ratios are taken within a round (machines are noisy). Memory: the local sweep
runs in a child process over ``--memory-tiles`` (default 1000 and 10000 tiles) and reports its peak RSS.

    python -m benchmarks.sweep_throughput [--tiles 4096] [--backbone tf_efficientnet_lite0] [--ray] [--gpu]
    python -m benchmarks.sweep_throughput --ray-only --tiles 16384 --rounds 1   # where start-up is amortised
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, SHARED_MANIFEST, model_only_rate, write_result


def make_tiles(root: Path, n: int, size: int, seed: int = 0) -> tuple[str, str]:
    """An XYZ tree of ``n`` tiles at zoom 19 (``size`` px JPEGs), cycling through a pool of distinct images:
    real Baige chips when ../shared/data is present, else synthetic chips."""
    import pandas as pd

    from landslide.data.images import encode_jpeg, read_image, resize
    from landslide.data.synthetic import make_chip

    if SHARED_MANIFEST.exists():
        labels = pd.read_csv(SHARED_MANIFEST)
        pool = [encode_jpeg(resize(read_image(str(SHARED_MANIFEST.parent / p)), size), 92)
                for p in labels["path"].head(96)]
        desc = f"real Baige UAV chips (96 distinct) as {size}-px JPEG tiles"
    else:
        rng = np.random.default_rng(seed)
        pool = [encode_jpeg(make_chip(rng, i % 2 == 0, size)[0], 92) for i in range(96)]
        desc = f"synthetic chips (96 distinct) as {size}-px JPEG tiles"
    side = int(np.ceil(np.sqrt(n)))
    x0, y0 = 407794, 216325
    for i in range(n):
        r, c = divmod(i, side)
        path = root / "19" / str(x0 + c) / f"{y0 + r}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pool[i % len(pool)])
    return str(root), desc


def make_model(out: Path, backbone: str, image_size: int) -> str:
    from landslide.models.checkpoint import make_card, save_checkpoint
    from landslide.models.classifier import build_model

    pretrained = "offline" if backbone in ("tf_efficientnet_lite0", "mobilenetv2_100") else "none"
    model = build_model(backbone, pretrained=pretrained)
    return save_checkpoint(model, make_card(model, image_size, threshold=0.5), str(out))


def sweep_config(model: str, tiles: str, out: str, args, **extra) -> dict:
    return {"name": "bench", "model": model, "tiles": {"source": tiles}, "output": out,
            "batch_size": args.batch_size, "shard_size": 256, "device": "cuda" if args.gpu else "cpu",
            "explain": {"enabled": False}, **extra}


def model_only(model: str, n: int, args) -> float:
    from landslide.inference.predictor import Predictor

    return model_only_rate(Predictor(model, "cuda" if args.gpu else "cpu"), n, args.batch_size, args.gpu)


def local_sweep(model: str, tiles: str, out: str, args) -> float:
    from landslide.config import SweepConfig, parse_config
    from landslide.inventory.sweep import run_sweep

    cfg = parse_config(sweep_config(model, tiles, out, args, read_threads=args.read_threads), "bench",
                       schema=SweepConfig)
    start = time.perf_counter()
    summary = run_sweep(cfg)
    return summary["tiles_ok"] / (time.perf_counter() - start)


def ray_sweep(model: str, tiles: str, out: str, args) -> dict:
    """End-to-end tiles/s (the call of ``sweep_on_ray``: preflight, plan, actor start-up, all tiles, inventory),
    steady tiles/s (after the first shard is committed) and the seconds to the first committed shard: Ray's
    start-up (actor processes importing torch, loading the model) is a fixed cost that only large sweeps
    amortise."""
    import ray

    from landslide.config import SweepConfig, parse_config
    from ray_jobs.sweep import sweep_on_ray

    # CPU-only, reads are fused into the actor (the default): give it all the cores; a GPU actor needs a couple
    # of host threads and leaves the rest to the read tasks
    cpus = args.actor_cpus or (2.0 if args.gpu else ray.cluster_resources()["CPU"])
    ray_cfg = {"inference_actors": 1, "cpus_per_actor": cpus, "read_cpus": args.read_cpus,
               "gpus_per_actor": 1 if args.gpu else 0}
    cfg = parse_config(sweep_config(model, tiles, out, args, ray=ray_cfg), "bench", schema=SweepConfig)
    commits: list[float] = []
    start = time.perf_counter()
    summary = sweep_on_ray(cfg, progress=lambda m: commits.append(time.perf_counter()) if "written" in m else None)
    end = time.perf_counter()
    steady = None
    if len(commits) > 1:
        steady = (summary["tiles_ok"] - cfg.shard_size) / (commits[-1] - commits[0])
    return {"ray_sweep": summary["tiles_ok"] / (end - start), "ray_sweep_steady": steady,
            "ray_first_shard_s": commits[0] - start if commits else None,
            "ray_after_last_shard_s": end - commits[-1] if commits else None}


def naive_loop(model: str, tiles: str, n: int, args) -> float:
    from landslide.inference.predictor import Predictor
    from landslide.inventory.tiles import build_index, read_tile

    predictor = Predictor(model, "cuda" if args.gpu else "cpu")
    uris = list(build_index(tiles)["uri"])[:n]
    start = time.perf_counter()
    for uri in uris:
        predictor.predict(predictor.prepare(read_tile(uri))[None])
    return len(uris) / (time.perf_counter() - start)


def peak_rss_child(model: str, n: int, work: Path, args) -> dict:
    """Peak RSS (MiB) of a child process that sweeps ``n`` tiles."""
    tiles, _ = make_tiles(work / f"mem{n}", n, args.image_size)
    # VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss over fork+exec into the child
    code = ("import json,re,sys,time;from landslide.config import SweepConfig,parse_config;"
            "from landslide.inventory.sweep import run_sweep;cfg=parse_config(json.loads(sys.argv[1]),'m',"
            "schema=SweepConfig);t=time.perf_counter();s=run_sweep(cfg);"
            "hwm=int(re.search(r'VmHWM:\\s+(\\d+)',open('/proc/self/status').read()).group(1));"
            "print(json.dumps({'tiles':s['tiles_ok'],'seconds':time.perf_counter()-t,'peak_rss_mib':hwm/1024}))")
    cfg = sweep_config(model, tiles, str(work / f"mem{n}-out"), args, read_threads=args.read_threads)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True,
                          cwd=REPO, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiles", type=int, default=4096)
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128, help="tile and model input size")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--read-threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--naive-tiles", type=int, default=128)
    p.add_argument("--ray", action="store_true", help="also the Ray Data sweep")
    p.add_argument("--ray-only", action="store_true", help="the Ray sweep and the ceiling only (large --tiles)")
    p.add_argument("--ceiling-images", type=int, default=4096, help="images per ceiling measurement (at most)")
    p.add_argument("--actor-cpus", type=float, help="default: every CPU of the local Ray instance (reads are "
                   "fused into the actor on CPU-only machines)")
    p.add_argument("--read-cpus", type=float, default=0.5, help="read tasks' CPUs, where reads are separate (GPU)")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--memory-tiles", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--memory-backbone", default="baseline_cnn", help="a small model keeps the 10k-tile run short")
    p.add_argument("--memory-image-size", type=int, default=64)
    p.add_argument("--out")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    tiles, desc = make_tiles(work / "tiles", args.tiles, args.image_size)
    model = make_model(work / "model", args.backbone, args.image_size)
    if args.ray or args.ray_only:
        import ray

        ray.init(num_cpus=None, log_to_driver=False, include_dashboard=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
    rounds = []
    for r in range(args.rounds):
        # the ceiling brackets the other arms (measured before and after, averaged): it drifts on shared machines
        before = model_only(model, min(args.tiles, args.ceiling_images), args)
        row = {} if args.ray_only else {"local_sweep": local_sweep(model, tiles, str(work / f"local{r}"), args),
                                        "naive_loop": naive_loop(model, tiles, args.naive_tiles, args)}
        if args.ray or args.ray_only:
            row.update(ray_sweep(model, tiles, str(work / f"ray{r}"), args))
        after = model_only(model, min(args.tiles, args.ceiling_images), args)
        row["model_only"] = (before + after) / 2
        row["model_only_spread"] = abs(before - after) / row["model_only"]
        row["ratios"] = {k: row[k] / row["model_only"] for k in row
                         if not k.startswith("model_only") and not k.endswith("_s") and row[k] is not None}
        print(f"round {r}: " + json.dumps({k: v if v is None else round(v, 2) for k, v in row.items()
                                           if k != "ratios"}), flush=True)
        rounds.append(row)
    arms = [k for k in rounds[0] if k != "ratios" and rounds[0][k] is not None]
    median = {k: float(np.median([row[k] for row in rounds])) for k in arms}
    ratios = {k: float(np.median([row["ratios"][k] for row in rounds])) for k in rounds[0]["ratios"]}

    mem_args = argparse.Namespace(**{**vars(args), "backbone": args.memory_backbone,
                                     "image_size": args.memory_image_size})
    mem_model = make_model(work / "mem-model", args.memory_backbone, args.memory_image_size)
    memory = {str(n): peak_rss_child(mem_model, n, work, mem_args) for n in ([] if args.ray_only
                                                                             else args.memory_tiles)}

    result = {
        "data": desc, "tiles": args.tiles, "backbone": args.backbone, "image_size": args.image_size,
        "batch_size": args.batch_size, "device": "cuda" if args.gpu else "cpu", "rounds": rounds,
        "median_tiles_per_s": median, "median_ratio_to_model_only": ratios,
        "targets": {"local_sweep_ratio": ">= 0.8"},
        "notes": "ray_sweep is end to end (preflight, plan, actor start-up, all tiles, inventory); ray_sweep_steady "
                 "counts the tiles after the first committed shard over the time after it; ray_first_shard_s is the "
                 "time to the first committed shard, ray_after_last_shard_s the inventory merge after the last",
        "memory": {"backbone": args.memory_backbone, "image_size": args.memory_image_size, "runs": memory},
        "peak_rss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    suffix = ("_gpu" if args.gpu else "") + (f"_ray_{args.tiles}" if args.ray_only else "")
    write_result(f"sweep_throughput{suffix}", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
