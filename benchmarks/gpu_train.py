"""GPU training throughput of one backbone (default: EfficientNet-B3 at 300 px, the study's best model),
with AMP and channels-last, on synthetic in-memory tensors: the model's own speed, to compare with timm's
published training benchmarks for the same model, input size and GPU.

The step is the library's: the registry's model (backbone + dropout + one-logit head), BCE loss, Adam,
AMP through ``torch.autocast`` (bf16 where supported, else fp16 with a GradScaler).

    python benchmarks/gpu_train.py [--backbone efficientnet_b3] [--batch-size 64] [--steps 50]
    python benchmarks/gpu_train.py --no-amp --no-channels-last     # the plain fp32 NCHW baseline
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from benchmarks.common import write_result
from landslide.models.classifier import build_model
from landslide.models.registry import get_spec


def measure(backbone: str, image_size: int, batch_size: int, steps: int, warmup: int, amp: bool,
            channels_last: bool, device: torch.device) -> dict:
    """Training images/s over ``steps`` timed steps after ``warmup`` steps."""
    model = build_model(backbone, "none").to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).to(memory_format=memory_format)
    y = torch.randint(0, 2, (batch_size,), device=device).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type) if amp and dtype == torch.float16 else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = loss_fn(model(x).squeeze(1).float(), y)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"amp": amp, "amp_dtype": str(dtype).replace("torch.", "") if amp else None,
           "channels_last": channels_last, "images_per_s": batch_size * steps / seconds,
           "ms_per_step": 1000 * seconds / steps}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="efficientnet_b3")
    p.add_argument("--image-size", type=int, help="default: the registry's size (300 for B3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--baseline", action="store_true", help="also measure fp32 NCHW in the same run")
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (smoke test only)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA GPU visible: run this on a GPU machine (or --allow-cpu for a smoke test)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    size = args.image_size or get_spec(args.backbone).input_size
    runs = [measure(args.backbone, size, args.batch_size, args.steps, args.warmup, not args.no_amp,
                    not args.no_channels_last, device)]
    if args.baseline:
        runs.append(measure(args.backbone, size, args.batch_size, args.steps, args.warmup, False, False, device))
    result = {"backbone": args.backbone, "image_size": size, "batch_size": args.batch_size, "steps": args.steps,
              "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "runs": runs,
              "compare_with": "timm results/benchmark-train-amp-nhwc-*.csv, same model, size and GPU"}
    if len(runs) == 2:
        result["speedup_amp_channels_last"] = runs[0]["images_per_s"] / runs[1]["images_per_s"]
    write_result("gpu_train", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
