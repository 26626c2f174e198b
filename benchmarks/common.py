"""Shared helpers for benchmarks: data to run on, machine description, JSON results."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
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
