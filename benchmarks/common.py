"""Shared helpers for benchmarks: data to run on, machine description, JSON results."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED_MANIFEST = REPO.parent / "shared" / "data" / "baige_uav" / "labels.csv"


def data_manifest(work: Path, n_per_class: int = 48, size: int = 256) -> tuple[str, str]:
    """(manifest, description): the real Baige UAV chips when ../shared/data is present, else synthetic."""
    if SHARED_MANIFEST.exists():
        return str(SHARED_MANIFEST), "real: ../shared/data/baige_uav (128-px PNG chips)"
    from landslide.data.synthetic import generate_dataset

    path = generate_dataset(str(work / "synth"), n_per_class=n_per_class, size=size, seed=0)
    return path, f"synthetic: {2 * n_per_class} generated {size}-px chips (../shared/data absent)"


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(name: str, result: dict, out: str | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``out``) with a timestamp and the machine."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path


def model_only_rate(predictor, n: int, batch_size: int, gpu: bool = False) -> float:
    """The ceiling: images/s of ``predictor.predict`` (a Predictor or FootprintPredictor) on one prepared random
    uint8 batch at its input size, repeated until ``n`` images, after a warm-up."""
    import numpy as np

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (batch_size, predictor.input_size, predictor.input_size, 3), np.uint8)
    predictor.predict(batch)  # warm-up
    done, start = 0, time.perf_counter()
    while done < n:
        predictor.predict(batch)
        done += len(batch)
    if gpu:
        import torch
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)
