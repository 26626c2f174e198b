"""Ray Data sweeps: reads as separate tasks (the default) vs reads fused into the inference actors
(``ray.fuse_reads``), same model, tiles and machine, in one run.

Arms (interleaved in every round; ratios are taken within a round, machines are noisy):

- ``separate``: read tasks (``read_cpus``) feeding an actor pool (``cpus_per_actor``): the default pipeline.
- ``fused``: the same actor reads its own batches (``read_threads`` threads), with the same CPUs per actor.
- ``fused_all_cpus``: fused, the actor given the read tasks' CPUs as well (the fairest fused setting).

Reported: end-to-end tiles/s (Ray start-up of actors included) and steady tiles/s (after the first committed
shard), their medians over rounds and the median ratio of each arm to ``separate``.

    python -m benchmarks.ray_sweep_reads [--tiles 1024] [--rounds 3] [--gpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_result
from benchmarks.sweep_throughput import make_model, make_tiles, sweep_config


def run_arm(model: str, tiles: str, out: str, args, fuse: bool, actor_cpus: float) -> dict:
    from landslide.config import SweepConfig, parse_config
    from ray_jobs.sweep import sweep_on_ray

    ray_cfg = {"inference_actors": 1, "cpus_per_actor": actor_cpus, "read_cpus": args.read_cpus,
               "gpus_per_actor": 1 if args.gpu else 0, "fuse_reads": fuse}
    cfg = parse_config(sweep_config(model, tiles, out, args, read_threads=args.read_threads, ray=ray_cfg),
                       "bench", schema=SweepConfig)
    commits: list[float] = []
    lines: list[str] = []

    def progress(message: str) -> None:
        lines.append(message)
        if "written" in message:
            commits.append(time.perf_counter())

    start = time.perf_counter()
    summary = sweep_on_ray(cfg, progress=progress)
    end = time.perf_counter()
    steady = (summary["tiles_ok"] - cfg.shard_size) / (commits[-1] - commits[0]) if len(commits) > 1 else None
    ops = next((m.split(": ", 1)[1] for m in lines if m.startswith("Ray Data operators")), "")
    return {"end_to_end": summary["tiles_ok"] / (end - start), "steady": steady, "operators": ops}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiles", type=int, default=1024)
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--read-threads", type=int, default=2)
    p.add_argument("--actor-cpus", type=float, default=1.0, help="ray.cpus_per_actor (the default: 1)")
    p.add_argument("--read-cpus", type=float, default=1.0, help="ray.read_cpus (the default: 1)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(argv)

    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-ray-reads-"))
    tiles, desc = make_tiles(work / "tiles", args.tiles, args.image_size)
    model = make_model(work / "model", args.backbone, args.image_size)
    ray.init(log_to_driver=False, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    arms = {"separate": (False, args.actor_cpus), "fused": (True, args.actor_cpus),
            "fused_all_cpus": (True, args.actor_cpus + args.read_cpus)}
    rounds = []
    for r in range(args.rounds):
        row = {name: run_arm(model, tiles, str(work / f"{name}{r}"), args, fuse, cpus)
               for name, (fuse, cpus) in (list(arms.items()) if r % 2 == 0 else list(arms.items())[::-1])}
        row["ratios_to_separate"] = {
            f"{name}_{kind}": row[name][kind] / row["separate"][kind]
            for name in arms if name != "separate" for kind in ("end_to_end", "steady")
            if row[name][kind] and row["separate"][kind]}
        print(f"round {r}: " + ", ".join(f"{n} {row[n]['end_to_end']:.1f}/{row[n]['steady'] or 0:.1f} tiles/s"
                                          for n in arms), flush=True)
        rounds.append(row)
    median = {f"{n}_{k}": float(np.median([row[n][k] for row in rounds if row[n][k]]))
              for n in arms for k in ("end_to_end", "steady")}
    ratios = {k: float(np.median([row["ratios_to_separate"][k] for row in rounds])) for k in rounds[0]["ratios_to_separate"]}
    result = {
        "data": desc, "tiles": args.tiles, "backbone": args.backbone, "image_size": args.image_size,
        "batch_size": args.batch_size, "read_threads": args.read_threads, "device": "cuda" if args.gpu else "cpu",
        "ray_cluster": ray.cluster_resources(),
        "arms": {n: {"fuse_reads": f, "cpus_per_actor": c, "read_cpus": None if f else args.read_cpus}
                 for n, (f, c) in arms.items()},
        "operators": {n: rounds[0][n]["operators"] for n in arms},
        "rounds": rounds, "median_tiles_per_s": median, "median_ratio_to_separate": ratios,
        "command": "python -m benchmarks.ray_sweep_reads " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_result("ray_sweep_reads" + ("_gpu" if args.gpu else ""), result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
