"""Load on the HTTP endpoint (Ray Serve on a local Ray instance, 127.0.0.1 only), bounded.

For each concurrency level, ``--requests`` valid ``/v1/classify`` requests are sent by that many client
threads; p50/p95/p99 latency, throughput and errors are recorded (errors must be 0). In the same run: the
model-only ceiling (``Predictor.predict`` on in-memory batches of ``max_batch_size``) for the served/ceiling
ratio, and the latency of ``/v1/explain`` against ``/v1/classify`` at concurrency 1 (target <= 2.5x).

    python -m benchmarks.serve_load [--backbone tf_efficientnet_lite0] [--concurrency 1 4 8] [--requests 96]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
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


def _load(url: str, bodies: list[bytes], concurrency: int, total: int) -> dict:
    import requests

    session_local = threading.local()

    def one(i: int) -> tuple[float, int]:
        session = getattr(session_local, "s", None) or requests.Session()
        session_local.s = session
        start = time.perf_counter()
        r = session.post(url, data=bodies[i % len(bodies)], headers={"Content-Type": "image/jpeg"}, timeout=120)
        return time.perf_counter() - start, r.status_code

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(total)))
    wall = time.perf_counter() - start
    lat = np.array([r[0] for r in results]) * 1000
    errors = sum(1 for r in results if r[1] != 200)
    return {"concurrency": concurrency, "requests": total, "errors": errors, "requests_per_s": total / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=96)
    p.add_argument("--explain-requests", type=int, default=16)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--out")
    args = p.parse_args(argv)

    import ray
    import requests
    from ray import serve

    from benchmarks.sweep_throughput import make_model
    from landslide.data.images import decode_image
    from landslide.inference.predictor import Predictor
    from serve.app import build_app

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = make_model(work / "model", args.backbone, args.image_size)
    bodies = _jpegs(16, args.image_size)

    predictor = Predictor(model)
    batch = np.stack([predictor.prepare(decode_image(b)) for b in bodies[:args.max_batch_size]])
    predictor.predict(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5:
        predictor.predict(batch)
        done += len(batch)
    ceiling = done / (time.perf_counter() - start)
    del predictor

    port = _free_port()
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}},
             include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    small = {"num_cpus": 0.5}
    serve.run(build_app({"model": model, "device": "cpu", "max_batch_size": args.max_batch_size,
                         "classifier": {"num_cpus": 1, "max_ongoing_requests": 64, "max_queued_requests": 512},
                         "explainer": small, "ingress": {"num_cpus": 0.25, "max_ongoing_requests": 128,
                                                         "max_queued_requests": 512}}),
              name="bench", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    while requests.get(f"{base}/readyz", timeout=10).status_code != 200:
        time.sleep(1)
    _load(f"{base}/v1/classify", bodies, 2, 16)  # warm-up
    levels = [_load(f"{base}/v1/classify", bodies, c, args.requests) for c in args.concurrency]
    classify1 = _load(f"{base}/v1/classify", bodies, 1, args.explain_requests)
    explain1 = _load(f"{base}/v1/explain?format=png", bodies, 1, args.explain_requests)
    serve.shutdown()
    ray.shutdown()

    best = max(levels, key=lambda r: r["requests_per_s"])
    result = {
        "backbone": args.backbone, "image_size": args.image_size, "max_batch_size": args.max_batch_size,
        "levels": levels, "model_only_images_per_s": ceiling,
        "served_to_model_only": best["requests_per_s"] / ceiling,
        "explain_vs_classify_p50": explain1["p50_ms"] / classify1["p50_ms"],
        "classify_c1": classify1, "explain_c1": explain1,
        "targets": {"errors": 0, "explain_vs_classify_p50": "<= 2.5"},
    }
    write_result("serve_load", result, args.out)
    return 0 if all(r["errors"] == 0 for r in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
