"""Load on the HTTP endpoint (Ray Serve on a local Ray instance, 127.0.0.1 only), beside a plain Serve app.

Two applications run side by side on one local Ray instance, with the same model, batch size and JPEG payloads:

- ``landslide``: the project's endpoint (``serve.app:build_app``), every validation, auth and error rule on;
- ``plain``: the reference arm, a single-deployment Ray Serve app as Ray's batching guide writes it (raw image
  body, decode and resize, ``@serve.batch``, no ingress layer, no checks).

For each round the model-only ceiling (``Predictor.predict`` on in-memory uint8 batches of ``max_batch_size`` in
this process, torch on every core) is measured first, then each arm at each concurrency level (arms
alternating): ``--requests`` valid classify requests sent by that many client threads over keep-alive
connections; p50/p95/p99 latency, throughput and errors (which must be 0). Ratios to the ceiling are taken
within a round; the summary gives their medians. Last, ``/v1/explain`` against ``/v1/classify`` at concurrency 1
(target <= 2.5x at p50).

    python -m benchmarks.serve_load [--backbone tf_efficientnet_lite0] [--concurrency 1 4 8 16] [--rounds 3]

The model replicas (both classifiers and the explainer) get ``--replica-cpus`` logical CPUs (Ray sets their
torch threads from it; default: every core, as the ceiling has), on a Ray instance started with enough logical
CPUs for both apps at once. Setting
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` in the environment applies Ray's own fast-path settings to every Ray
process of the run (recorded in the result).
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, write_result

ARMS = ("landslide", "plain")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpegs(n: int, size: int) -> list[bytes]:
    from PIL import Image

    from landslide.data.synthetic import make_chip

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(make_chip(rng, i % 2 == 0, size)[0]).save(buf, format="JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def _load(port: int, path: str, bodies: list[bytes], concurrency: int, total: int) -> dict:
    """``total`` POSTs of the JPEG ``bodies`` to ``path`` from ``concurrency`` threads, each on its own
    keep-alive connection (http.client: a light client, so the 2-core machine's CPU goes to the server)."""
    counter = iter(range(total))
    lock = threading.Lock()
    results: list[tuple[float, int]] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": "image/jpeg"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status = -1
            mine.append((time.perf_counter() - start, status))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array([r[0] for r in results]) * 1000
    errors = sum(1 for r in results if r[1] != 200)
    return {"concurrency": concurrency, "requests": total, "errors": errors, "requests_per_s": total / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99))}


def plain_app(model: str, max_batch_size: int, batch_wait_timeout_s: float, cpus: float):
    """The reference arm: one deployment, raw body -> decode -> resize -> ``@serve.batch`` -> JSON."""
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(ray_actor_options={"num_cpus": cpus}, max_ongoing_requests=256, max_queued_requests=-1)
    class Plain:
        def __init__(self):
            from landslide.data.images import decode_image
            from landslide.inference.predictor import Predictor

            self.decode = decode_image
            self.predictor = Predictor(model, "cpu")
            self.predict.set_max_batch_size(max_batch_size)
            self.predict.set_batch_wait_timeout_s(batch_wait_timeout_s)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
        async def predict(self, images: list[np.ndarray]) -> list[float]:
            return [float(p) for p in self.predictor.predict(np.stack(images))]

        async def __call__(self, request: Request) -> dict:
            image = self.predictor.prepare(self.decode(await request.body()))
            return {"probability": await self.predict(image)}

    return Plain.bind()


def _ceiling(model: str, bodies: list[bytes], batch_size: int, seconds: float = 5.0) -> float:
    from landslide.data.images import decode_image
    from landslide.inference.predictor import Predictor

    predictor = Predictor(model, "cpu")
    batch = np.stack([predictor.prepare(decode_image(bodies[i % len(bodies)])) for i in range(batch_size)])
    predictor.predict(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.predict(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--requests", type=int, default=192, help="requests per arm and concurrency level")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--explain-requests", type=int, default=16)
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    p.add_argument("--replica-cpus", type=float, default=float(os.cpu_count() or 1))
    p.add_argument("--out")
    args = p.parse_args(argv)

    import ray
    import requests
    from ray import serve

    from benchmarks.sweep_throughput import make_model
    from serve.app import build_app

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = make_model(work / "model", args.backbone, args.image_size)
    bodies = _jpegs(16, args.image_size)

    port = _free_port()
    # logical CPUs for both apps' model replicas, the explainer and the ingress at once; each model replica's
    # torch threads follow its own num_cpus (Ray sets OMP_NUM_THREADS)
    ray.init(num_cpus=int(4 * args.replica_cpus + 4), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    model_cpus = {"num_cpus": args.replica_cpus, "max_ongoing_requests": 256, "max_queued_requests": -1}
    serve.run(build_app({"model": model, "device": "cpu", "max_batch_size": args.max_batch_size,
                         "batch_wait_timeout_s": args.batch_wait_timeout_s, "max_batch_images": 16,
                         "classifier": model_cpus, "explainer": {"num_cpus": args.replica_cpus}}),
              name="landslide", route_prefix="/landslide")
    serve.run(plain_app(model, args.max_batch_size, args.batch_wait_timeout_s, args.replica_cpus), name="plain",
              route_prefix="/plain")
    paths = {"landslide": "/landslide/v1/classify", "plain": "/plain"}
    deadline = time.time() + 600
    while requests.get(f"http://127.0.0.1:{port}/landslide/readyz", timeout=30).status_code != 200:
        assert time.time() < deadline, "the landslide app did not become ready in 600 s"
        time.sleep(1)
    for arm in ARMS:  # warm-up: first batches, connection set-up
        _load(port, paths[arm], bodies, 4, 32)

    rounds = []
    for r in range(args.rounds):
        ceiling = _ceiling(model, bodies, args.max_batch_size)
        order = ARMS if r % 2 == 0 else ARMS[::-1]
        arms = {arm: [] for arm in ARMS}
        for c in args.concurrency:
            for arm in order:
                level = _load(port, paths[arm], bodies, c, args.requests)
                level["ratio_to_model_only"] = level["requests_per_s"] / ceiling
                arms[arm].append(level)
        rounds.append({"model_only_images_per_s": ceiling, "arms": arms})
        print(f"round {r}: ceiling {ceiling:.1f}/s; " + "; ".join(
            f"{arm} c{lv['concurrency']} {lv['requests_per_s']:.1f}/s ({lv['ratio_to_model_only']:.2f})"
            for arm in ARMS for lv in arms[arm]), flush=True)
    classify1 = _load(port, paths["landslide"], bodies, 1, args.explain_requests)
    explain1 = _load(port, "/landslide/v1/explain?format=png", bodies, 1, args.explain_requests)
    serve.shutdown()
    ray.shutdown()

    summary = {}
    for arm in ARMS:
        summary[arm] = []
        for i, c in enumerate(args.concurrency):
            levels = [rd["arms"][arm][i] for rd in rounds]
            summary[arm].append({
                "concurrency": c, "errors": sum(lv["errors"] for lv in levels),
                **{k: float(np.median([lv[k] for lv in levels]))
                   for k in ("requests_per_s", "ratio_to_model_only", "p50_ms", "p95_ms", "p99_ms")}})
    at16 = {arm: next((lv for lv in summary[arm] if lv["concurrency"] == 16), summary[arm][-1]) for arm in ARMS}
    result = {
        "backbone": args.backbone, "image_size": args.image_size, "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_s": args.batch_wait_timeout_s, "replica_cpus": args.replica_cpus,
        "requests_per_level": args.requests, "rounds": args.rounds,
        "ray_serve_throughput_optimized": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED", "0"),
        "summary": summary,
        "served_to_model_only": at16["landslide"]["ratio_to_model_only"],
        "plain_to_model_only": at16["plain"]["ratio_to_model_only"],
        "served_to_plain": at16["landslide"]["requests_per_s"] / at16["plain"]["requests_per_s"],
        "explain_vs_classify_p50": explain1["p50_ms"] / classify1["p50_ms"],
        "classify_c1": classify1, "explain_c1": explain1, "per_round": rounds,
        "targets": {"served_to_model_only": ">= 0.7 at concurrency 16", "errors": 0,
                    "explain_vs_classify_p50": "<= 2.5"},
    }
    write_result("serve_load", result, args.out)
    return 0 if all(lv["errors"] == 0 for arm in ARMS for lv in summary[arm]) else 1


if __name__ == "__main__":
    sys.exit(main())
