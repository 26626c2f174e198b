"""What test-time augmentation costs a sweep's model on a GPU: images/s of the bare model for ``tta`` none,
flips (4 views) and d4 (8 views), with the views run one after another (as ``landslide.models.tta`` does)
and stacked into one batch, for the study's backbones at their input sizes. Needs only torch and timm
(``landslide.models.tta`` imports nothing else).

    python -m benchmarks.gpu_tta [--batch 64] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from landslide.models.tta import views  # torch only: runs where the project's other dependencies are not


@torch.inference_mode()
def rate(model, x: torch.Tensor, mode: str, stacked: bool, seconds: float = 4.0) -> float:
    def step():
        vs = views(x, mode)
        if stacked:
            p = torch.sigmoid(model(torch.cat(vs)).float()).view(len(vs), -1).mean(0)
        else:
            p = sum(torch.sigmoid(model(v).float()) for v in vs) / len(vs)
        return p

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += len(x)
    torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(argv=None) -> int:
    import timm

    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out")
    args = p.parse_args(argv)
    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": args.batch,
               "dtype": "float32", "models": {}}
    for name, size in (("mobilenetv2_100", 224), ("tf_efficientnet_b3", 300), ("tf_efficientnet_lite0", 224)):
        model = timm.create_model(name, pretrained=False, num_classes=1).cuda().eval()
        x = torch.randn(args.batch, 3, size, size, device="cuda")
        row = {}
        for mode in ("none", "flips", "d4"):
            for stacked in ((False,) if mode == "none" else (False, True)):
                row[f"{mode}{'_stacked' if stacked else ''}"] = rate(model, x, mode, stacked)
        row["slowdown"] = {k: row["none"] / v for k, v in row.items() if k != "none"}
        results["models"][name] = row
        print(name, json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    text = json.dumps(results, indent=1)
    if args.out:
        open(args.out, "w").write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
