"""Planning a continent: the sweep driver's time and peak memory at 10k / 100k / 1M tiles, and the shard protocol
at that size (no duplicates, no gaps after a kill), by simulation: no model and no pixels, only what the driver
of ``ray_jobs.sweep`` does.

For each size a child process (so that its peak RSS is its own):

1. **index**: builds the tile index of a manifest (Parquet: ``path`` + bounds, a 0.5 m grid of 256-px tiles)
   and prunes it to a region that cuts a corner off the grid (``plan_sweep``: index, prune, shards, sweep.json);
2. **items**: the Ray Data items the driver hands to the pipeline (``ray_jobs.sweep.shard_items``);
3. **collect**: for a random 40 % of the shards, synthetic result rows arrive in batches, out of shard order, and
   are grouped and written exactly as ``sweep_on_ray``'s loop does (the driver's share of a running sweep,
   reported as tiles/s it can absorb); then the process "dies" (the plan is dropped);
4. **resume**: plans again from the cached index; the pending shards must be exactly the unwritten ones;
5. the rest are collected, then **finalize** merges every shard into the inventory (GeoParquet, GeoJSON of
   positives, summary); the inventory must hold each tile of the region exactly once.

    python -m benchmarks.plan_scale [--tiles 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, write_result

TILE_M = 128.0  # 256 px at 0.5 m
M_PER_DEG = 111_320.0


def make_manifest(path: Path, n: int) -> dict:
    """A manifest of ``n`` tiles on a square grid near the equator (no image files: planning never reads them)."""
    import pandas as pd

    side = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    r, c = np.divmod(i, side)
    step = TILE_M / M_PER_DEG
    west, north = 10.0 + c * step, 1.0 - r * step
    pd.DataFrame({"path": [f"tiles/{k}.jpg" for k in i], "west": west, "south": north - step, "east": west + step,
                  "north": north}).to_parquet(path, index=False)
    span = side * step
    # the region leaves out the grid's last 10 % of columns and rows: the index is pruned, not just taken
    return {"bbox": [10.0, 1.0 - 0.9 * span, 10.0 + 0.9 * span, 1.0], "km2": n * (TILE_M / 1000) ** 2}


def _model() -> dict:
    return {"name": "sim", "backbone": "none", "version": "000000000000", "input_size": 256, "threshold": 0.5,
            "inputs": "image", "tta": "none", "input_gsd_m": None}


class _ScorePredictor:
    """What ``infer_tiles`` needs of a predictor, scoring without pixels: about 1 % of tiles positive."""

    threshold = 0.5
    info = _model()

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.where(self.rng.random(len(images)) < 0.01, 0.9, 0.1)


def _collect(plan, shards: list[int], batch_size: int, seed: int) -> tuple[int, float]:
    """Result rows of ``shards`` arrive in batches, shards interleaved as several actors would send them, and
    are written by ``sweep_on_ray``'s :class:`~ray_jobs.sweep.ShardCommitter`; (tiles, seconds it took)."""
    from landslide.inventory.sweep import infer_tiles, shard_batches
    from ray_jobs.sweep import ShardCommitter

    rng = np.random.default_rng(seed)
    predictor = _ScorePredictor(seed)
    streams = [list(shard_batches([(s, plan.shard_rows(s))], batch_size)) for s in shards]
    arrivals = []
    for group in range(0, len(streams), 4):  # four actors' outputs interleaved
        pending = [list(st) for st in streams[group:group + 4]]
        while any(pending):
            k = rng.integers(len(pending))
            if pending[k]:
                arrivals.append(pending[k].pop(0))
    batches = []
    for (shard, _), rows in arrivals:  # the actors' work: results made before the clock starts
        n = len(rows)
        loaded = {"image": np.zeros((n, 1, 1, 3), np.uint8), "status": np.array(["ok"] * n, object),
                  "reason": np.array([""] * n, object), "nodata_fraction": np.zeros(n)}
        result = infer_tiles(predictor, rows, loaded, None, False)
        result["shard"] = shard
        batches.append(result)
    committer = ShardCommitter(plan, shards, progress=lambda _: None)
    started = time.perf_counter()
    for batch in batches:
        committer.add(batch)
    tiles = committer.processed
    return tiles, time.perf_counter() - started


def child(manifest: str, bbox: list[float], out: str, batch_size: int) -> dict:
    from landslide.config import SweepConfig, parse_config
    from landslide.inventory.sweep import finalize, plan_sweep
    from ray_jobs.sweep import shard_items

    cfg = parse_config({"name": "continent", "model": "unused", "tiles": {"source": manifest}, "output": out,
                        "region": {"bbox": bbox}, "shard_size": 256, "batch_size": batch_size,
                        "explain": {"enabled": False}, "merge_polygons": False}, "sim", schema=SweepConfig)
    timings = {}
    t = time.perf_counter()
    plan = plan_sweep(cfg, _model())
    timings["index_and_plan_s"] = time.perf_counter() - t
    t = time.perf_counter()
    items = shard_items(plan.tiles, plan.pending(), cfg.shard_size)
    timings["shard_items_s"] = time.perf_counter() - t
    timings["shard_items_mib"] = sum(len(i["rows"]) for i in items) / 2**20
    del items
    rng = np.random.default_rng(0)
    first = sorted(rng.choice(plan.n_shards, size=int(0.4 * plan.n_shards), replace=False).tolist())
    tiles, seconds = _collect(plan, first, batch_size, 1)
    timings["collect_tiles_per_s"] = tiles / seconds
    n_region, n_shards = len(plan.tiles), plan.n_shards
    del plan  # the driver dies here; only what is in the output folder survives
    t = time.perf_counter()
    plan = plan_sweep(cfg, _model())
    timings["resume_plan_s"] = time.perf_counter() - t
    pending = plan.pending()
    resumed_exactly = pending == sorted(set(range(n_shards)) - set(first))
    tiles, seconds = _collect(plan, pending, batch_size, 2)
    t = time.perf_counter()
    summary = finalize(plan, 0.0, tiles)
    timings["finalize_s"] = time.perf_counter() - t
    import pyarrow.parquet as pq

    ids = pq.read_table(Path(out) / "inventory.parquet", columns=["tile_id"]).column("tile_id").to_pandas()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
    return {**timings, "tiles_in_region": n_region, "shards": n_shards,
            "shards_before_kill": len(first), "pending_after_kill_exact": resumed_exactly,
            "inventory_rows": len(ids), "inventory_unique": bool(ids.is_unique),
            "inventory_equals_region": bool(ids.is_unique and len(ids) == n_region == summary["tiles_in"]),
            "positives": summary["positives"], "peak_rss_mib": hwm / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiles", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--child", nargs=4, metavar=("MANIFEST", "BBOX", "OUT", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.child:
        manifest, bbox, out, batch = args.child
        print(json.dumps(child(manifest, json.loads(bbox), out, int(batch))))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    runs = {}
    for n in args.tiles:
        manifest = work / f"manifest-{n}.parquet"
        region = make_manifest(manifest, n)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.plan_scale", "--child", str(manifest),
                               json.dumps(region["bbox"]), str(work / f"out-{n}"), str(args.batch_size)],
                              cwd=REPO, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{n} tiles: child failed\n{proc.stderr[-3000:]}")
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        run.update(tiles_in_manifest=n, manifest_km2=region["km2"], wall_s=time.perf_counter() - started)
        runs[str(n)] = run
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}), flush=True)
    sizes = sorted(runs, key=int)
    growth = {f"{a}->{b}": {"tiles_x": int(b) / int(a),
                            "plan_x": runs[b]["index_and_plan_s"] / runs[a]["index_and_plan_s"],
                            "finalize_x": runs[b]["finalize_s"] / runs[a]["finalize_s"],
                            "peak_rss_x": runs[b]["peak_rss_mib"] / runs[a]["peak_rss_mib"]}
              for a, b in zip(sizes, sizes[1:])}
    write_result("plan_scale", {
        "what": "the sweep driver at scale, simulated: a manifest of 256-px tiles at 0.5 m (128 m), a region "
                "that prunes a corner (81 % of the grid), shards of 256; synthetic results, ~1 % positive; "
                "local disk",
        "runs": runs, "growth": growth,
        "protocol_holds": all(r["pending_after_kill_exact"] and r["inventory_equals_region"] for r in runs.values()),
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
