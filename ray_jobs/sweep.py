"""Regional sweeps on Ray Data: every tile of a region through a trained model -> an inventory.

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m ray_jobs.sweep --config configs/sweeps/xyz_demo.yaml [--set output=gs://bucket/sweeps/x]

Pipeline (streaming, so memory stays flat as the region grows): the driver plans the sweep with the library
(tile index built once and cached, pruned to the region, cut into shards; finished shards of an earlier run
are skipped; no model is loaded there: :func:`~landslide.models.checkpoint.check_checkpoint`); the pending
*shards*, each with its index rows (:func:`shard_items`), are Ray Data's items -> the shards' tiles
are read and decoded/resized to uint8, inside the actors (fused, the default for CPU-only actors) or by
``read_shards`` tasks spread over the nodes (the default for GPU actors) -> an actor pool of
:class:`InferenceActor` (one ``Predictor`` each, GPU when configured) predicts and writes Grad-CAM overlays of
positives -> the driver collects the small result rows and writes each shard as soon as all its tiles are in ->
the library merges the shards into GeoParquet/GeoJSON and the summary. Killing the job loses only unfinished
shards; submitting it again completes the sweep with no gaps and no duplicates.

With a footprint model (card ``task: segmentation``) the unit is a scene (a GeoTIFF, an XYZ metatile or a listed
tile): :func:`footprints_on_ray` sweeps the pending ones in an actor pool, each actor stitching, tracing and writing
its scenes, and the driver merges their footprints across scene borders (streamed) into the inventory.

Reads and inference are two Ray Data operators. Ray's optimizer would fuse a task stage into the following
actor stage whenever their remote arguments match (as they do with the default 1 CPU each and no GPU), which
puts reading back inside the actors; the actor stage names its own scheduling strategy so that never happens
by accident. ``ray.fuse_reads`` asks for the fused pipeline on purpose (reads inside the actors): ``auto`` (the
default) fuses them for CPU-only actors, where that measured 1.55x faster on 2 cores, and keeps them separate
for GPU actors.
The job prints the operators Ray ran.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import logging
import math
import sys
import time
from typing import Iterator

import pandas as pd
import pyarrow as pa

from landslide.config import SweepConfig, load_config, parse_set
from landslide.errors import ConfigError
from landslide.inference.predictor import Predictor
from landslide.models.checkpoint import check_checkpoint, read_card
from landslide.inventory.adapt import adapted_model
from landslide.inventory.sweep import (TileReader, finalize, infer_tiles, plan_sweep, read_tiles, scored_batches,
                                      shard_batches, summary_lines)
from ray_jobs.common import check_resources, connect, job_parser, run_main

log = logging.getLogger("ray_jobs.sweep")

TILE_COLUMNS = ["tile_id", "uri", "window", "west", "south", "east", "north", "shard"]


MAX_BLOCKS = 1000
"""Ray Data blocks of pending shards at most (each block costs the driver about 1 ms to create)."""


def shard_items(tiles: pd.DataFrame, shards: list[int], shard_size: int) -> list[dict]:
    """One Ray Data item per shard: ``{"shard": s, "rows": its index rows (TILE_COLUMNS) as Arrow IPC bytes}``.
    The rows travel with the shard numbers (about 150 bytes a tile, serialised in one vectorised pass), so the
    driver creates one small block per group of shards instead of one pandas block per batch of tiles. Shard
    ``s`` is rows ``s * shard_size`` up to the next shard (the plan numbers shards in row order)."""
    table = pa.Table.from_pandas(tiles[TILE_COLUMNS], preserve_index=False)
    items = []
    for shard in shards:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(shard * shard_size, shard_size))
        items.append({"shard": shard, "rows": sink.getvalue().to_pybytes()})
    return items


def shard_rows(batch: dict) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(shard, index rows)`` for each item of a batch of :func:`shard_items`."""
    for shard, blob in zip(batch["shard"], batch["rows"]):
        yield int(shard), pa.ipc.open_stream(blob).read_all().to_pandas()


def read_shards(batch: dict, reader: TileReader, threads: int, batch_size: int) -> Iterator[dict]:
    """Ray Data task (separate reads): for each shard of ``batch`` (:func:`shard_items`), its index rows in batches of
    ``batch_size``, each with ``image`` (uint8, model input size), ``status``, ``reason`` and
    ``nodata_fraction`` (:func:`~landslide.inventory.sweep.read_tiles`; ``threads`` overlap object-store
    latency)."""
    with cf.ThreadPoolExecutor(threads) as pool:
        for _, rows in shard_batches(shard_rows(batch), batch_size):
            loaded = read_tiles(rows, reader, pool)
            out = {c: rows[c].to_numpy() for c in TILE_COLUMNS}
            out.update(loaded)
            out["status"] = loaded["status"].astype(str)
            out["reason"] = loaded["reason"].astype(str)
            yield out


class InferenceActor:
    """Ray Data actor: holds one Predictor (loaded once) and turns batches into result rows (with ``shard``).

    Separate reads: its batches come from :func:`read_shards`. Fused reads (``reader`` given): its batches are
    shards (:func:`shard_items`); it reads each shard's tiles itself, ``read_threads`` threads reading and decoding
    the next batches while the model scores this one (:func:`~landslide.inventory.sweep.scored_batches`, the
    local sweep's loop)."""

    def __init__(self, model: str, device: str, threshold: float | None, cam_method: str, output: str,
                 explain: bool, threads: int, batch_size: int, tta: str | None = None,
                 reader: TileReader | None = None, read_threads: int = 1):
        # Ray sets OMP_NUM_THREADS to the integer part of num_cpus; use what the actor reserved
        self.predictor = Predictor(model, device, threshold, cam_method, num_threads=threads, tta=tta)
        self.output, self.explain, self.batch_size = output, explain, batch_size
        self.reader = reader
        self.pool = cf.ThreadPoolExecutor(read_threads) if reader is not None else None

    def __call__(self, batch: dict) -> pd.DataFrame:
        if self.reader is None:
            rows = pd.DataFrame({c: batch[c] for c in TILE_COLUMNS})
            result = infer_tiles(self.predictor, rows, batch, self.output, self.explain)
            result["shard"] = rows["shard"].to_numpy()
            return result
        parts = []
        for (shard, _), result in scored_batches(self.predictor, shard_batches(shard_rows(batch), self.batch_size),
                                                 self.reader, self.pool, self.output, self.explain):
            result["shard"] = shard
            parts.append(result)
        return pd.concat(parts, ignore_index=True)


class ShardCommitter:
    """The driver's share of a Ray sweep: result rows (with ``shard``) arrive in batches, shards in any order
    and interleaved; each shard is written whole (:meth:`SweepPlan.write_shard`) as soon as its last tile is in,
    and only unfinished shards are held. How many tiles a second it absorbs: benchmarks/plan_scale.py."""

    def __init__(self, plan, shards: list[int], progress=print):
        self.plan, self.progress = plan, progress
        self.expected = {shard: len(plan.shard_rows(shard)) for shard in shards}
        self.tiles = sum(self.expected.values())
        self.processed = 0
        self._buffers: dict[int, list[pd.DataFrame]] = collections.defaultdict(list)
        self._counts: collections.Counter = collections.Counter()

    def add(self, batch: pd.DataFrame) -> None:
        for shard, part in batch.groupby("shard"):
            shard = int(shard)
            self._buffers[shard].append(part)
            self._counts[shard] += len(part)
            if self._counts[shard] == self.expected[shard]:
                self.plan.write_shard(shard, pd.concat(self._buffers.pop(shard), ignore_index=True))
                self.processed += self._counts[shard]
                self.progress(f"shard {shard + 1}/{self.plan.n_shards} written "
                              f"({self.processed}/{self.tiles} tiles this run)")


def sweep_on_ray(cfg: SweepConfig, progress=print) -> dict:
    """Run a sweep through Ray Data on the connected cluster; returns the library's summary."""
    import ray

    started = time.perf_counter()
    # preflight on the driver: the cluster can place the actors and a read task, the checkpoint fits its card,
    # the output is writable, the region has tiles
    ray_cfg = cfg.ray
    fix = "lower ray.inference_actors / cpus_per_actor / gpus_per_actor / read_cpus"
    check_resources(ray_cfg.inference_actors, {"CPU": ray_cfg.cpus_per_actor, "GPU": ray_cfg.gpus_per_actor},
                    wait=False, what="sweep: {n} inference actor(s)", fix=fix)
    cpus = ray.cluster_resources().get("CPU", 0.0)
    if not ray_cfg.reads_fused and ray_cfg.inference_actors * ray_cfg.cpus_per_actor + ray_cfg.read_cpus > cpus:
        raise ConfigError(f"sweep: {ray_cfg.inference_actors} actor(s) x {ray_cfg.cpus_per_actor:g} CPU leave no "
                          f"room for a read task ({ray_cfg.read_cpus:g} CPU) on a cluster of {cpus:g} CPUs; {fix}")
    # no model on the driver: the card (checked against its weights) says all that planning needs
    card = check_checkpoint(cfg.model)
    plan = plan_sweep(cfg, card.prediction_info(cfg.threshold, cfg.tta))
    reader = TileReader.for_sweep(cfg, card.input_size)
    pending = plan.pending()
    model_uri = cfg.model
    if pending and cfg.adapt.batchnorm:  # AdaBN once, on the driver; the actors load the adapted model
        driver_model = Predictor(cfg.model, "cpu", cfg.threshold, cfg.explain.method, tta=cfg.tta)
        with cf.ThreadPoolExecutor(cfg.read_threads) as pool:
            model_uri = adapted_model(cfg.output, driver_model, plan.tiles, cfg.adapt, cfg.batch_size,
                                      lambda part: read_tiles(part, reader, pool))
        driver_model.close()
        progress(f"AdaBN: scoring with {model_uri}")
    if len(pending) < plan.n_shards:
        progress(f"resuming: {plan.n_shards - len(pending)} of {plan.n_shards} shards already written")
    committer = ShardCommitter(plan, pending, progress)
    n_tiles = committer.tiles
    progress(f"{len(plan.tiles)} tiles in the region, {n_tiles} to sweep in {len(pending)} shard(s)")
    if pending:
        # shards, not tiles, are the pipeline's items: the driver's cost grows with shards
        ds = ray.data.from_items(shard_items(plan.tiles, pending, cfg.shard_size),
                                 override_num_blocks=min(len(pending), MAX_BLOCKS))
        actor_kwargs = {"model": model_uri, "device": "cuda" if ray_cfg.gpus_per_actor > 0 else "cpu",
                        "threshold": cfg.threshold, "cam_method": cfg.explain.method, "output": cfg.output,
                        "explain": cfg.explain.enabled, "tta": cfg.tta, "batch_size": cfg.batch_size,
                        "threads": max(1, math.ceil(ray_cfg.cpus_per_actor))}
        if ray_cfg.reads_fused:
            actor_kwargs.update(reader=reader, read_threads=cfg.read_threads)
        else:
            # separate tasks, SPREAD over the nodes: I/O and decoding scale apart from the (GPU) actors and
            # overlap with inference
            ds = ds.map_batches(read_shards, batch_size=1, batch_format="numpy",
                                fn_kwargs={"reader": reader, "threads": cfg.read_threads,
                                           "batch_size": cfg.batch_size},
                                compute=ray.data.TaskPoolStrategy(size=ray_cfg.read_concurrency),
                                num_cpus=ray_cfg.read_cpus, scheduling_strategy="SPREAD")
        # the actors' own scheduling strategy keeps Ray's optimizer from fusing the read tasks into them
        ds = ds.map_batches(InferenceActor, batch_size=1 if ray_cfg.reads_fused else cfg.batch_size,
                            batch_format="numpy", fn_constructor_kwargs=actor_kwargs,
                            compute=ray.data.ActorPoolStrategy(size=ray_cfg.inference_actors),
                            num_cpus=ray_cfg.cpus_per_actor, num_gpus=ray_cfg.gpus_per_actor or None,
                            scheduling_strategy="DEFAULT")
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            committer.add(batch)
        progress("Ray Data operators: " + " | ".join(operators(ds.stats())))
    return finalize(plan, time.perf_counter() - started, committer.processed)


class FootprintActor:
    """Ray Data actor for footprint sweeps: holds one FootprintPredictor (loaded once) and sweeps whole scenes or
    tile groups (:func:`landslide.inventory.footprint_sweep.sweep_job`: stitched probability COG and footprints
    written to the output, the scene's record returned)."""

    def __init__(self, cfg: SweepConfig, settings: dict, device: str, threads: int):
        from landslide.inference.footprints import FootprintPredictor

        self.predictor = FootprintPredictor(cfg.model, device, cfg.threshold, num_threads=threads)
        self.cfg, self.settings = cfg, settings

    def __call__(self, batch: dict) -> dict:
        import json

        from landslide.inventory.footprint_sweep import SceneJob, sweep_job

        records = []
        for i in range(len(batch["key"])):
            job = SceneJob.from_item({k: batch[k][i] for k in ("key", "uri", "crs", "zoom", "tiles")})
            records.append(json.dumps(sweep_job(self.predictor, job, self.cfg, self.settings)))
        return {"key": batch["key"], "record": records}


def footprints_on_ray(cfg: SweepConfig, progress=print) -> dict:
    """A footprint sweep through Ray Data: the driver plans the jobs (scenes, XYZ metatiles or listed tiles;
    finished ones of an earlier run kept), an actor pool of :class:`FootprintActor` sweeps the rest one job per
    call, each writing its own files, and the driver merges every job's footprints across their borders
    (streamed) into the inventory. Killing the job loses only unfinished scenes."""
    import json

    import ray

    from landslide.inference.footprints import FootprintPredictor
    from landslide.inventory.footprint_sweep import (finish_footprint_sweep, finished_record, plan_footprint_sweep,
                                                     scene_state)

    started = time.perf_counter()
    ray_cfg = cfg.ray
    check_resources(ray_cfg.inference_actors, {"CPU": ray_cfg.cpus_per_actor, "GPU": ray_cfg.gpus_per_actor},
                    wait=False, what="sweep: {n} footprint actor(s)",
                    fix="lower ray.inference_actors / cpus_per_actor / gpus_per_actor")
    driver_model = FootprintPredictor(cfg.model, "cpu", cfg.threshold)
    plan = plan_footprint_sweep(cfg, driver_model)
    del driver_model
    done = {job.key: finished_record(cfg, job, plan.settings) for job in plan.jobs}
    pending = [job for job in plan.jobs if done[job.key] is None]
    if len(pending) < len(plan.jobs):
        progress(f"resuming: {len(plan.jobs) - len(pending)} of {len(plan.jobs)} scenes already swept")
    progress(f"{len(plan.jobs)} scenes ({plan.source_format}) in the region, {len(pending)} to sweep")
    if pending:
        ds = ray.data.from_items([job.to_item() for job in pending], override_num_blocks=min(len(pending), 10_000))
        ds = ds.map_batches(FootprintActor, batch_size=1, batch_format="numpy",
                            fn_constructor_kwargs={"cfg": cfg, "settings": plan.settings,
                                                   "device": "cuda" if ray_cfg.gpus_per_actor > 0 else "cpu",
                                                   "threads": max(1, math.ceil(ray_cfg.cpus_per_actor))},
                            compute=ray.data.ActorPoolStrategy(size=ray_cfg.inference_actors),
                            num_cpus=ray_cfg.cpus_per_actor, num_gpus=ray_cfg.gpus_per_actor or None)
        swept = 0
        for row in ds.iter_rows():
            record = json.loads(row["record"])
            done[record["scene"]] = record
            swept += 1
            progress(f"scene {swept}/{len(pending)} {record['scene']}: {scene_state(record)}")
    records = [done[job.key] for job in plan.jobs]
    return finish_footprint_sweep(cfg, plan, records, len(pending), started)


def operators(stats: str) -> list[str]:
    """The operators Ray Data ran, from ``Dataset.stats()`` (``MapBatches(read_shards)``, or
    ``MapBatches(read_shards)->MapBatches(InferenceActor)`` had Ray's optimizer fused them)."""
    import re

    return [m.group(1) for m in re.finditer(r"^Operator \d+ (.+?): ", stats, re.MULTILINE)]


def build_parser() -> argparse.ArgumentParser:
    return job_parser("python -m ray_jobs.sweep", __doc__.split("\n\n")[0], "YAML sweep config (path or URI)",
                      "ray.inference_actors=4")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        cfg = load_config(args.config, parse_set(args.set), schema=SweepConfig)
        footprints = read_card(cfg.model).task == "segmentation"
        import ray

        connect(args.address)
        ray.data.DataContext.get_current().enable_progress_bars = False
        print(f"landslide: Ray {ray.__version__}, cluster {ray.cluster_resources()}; output {cfg.output}",
              flush=True)
        run = footprints_on_ray if footprints else sweep_on_ray
        summary = run(cfg, lambda line: print(f"landslide: {line}", flush=True))
        print(summary_lines(summary, cfg.output), flush=True)
        return 0

    return run_main(body, args.debug)


if __name__ == "__main__":
    sys.exit(main())

