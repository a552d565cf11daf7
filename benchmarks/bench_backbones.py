"""Backbone benchmark: parameters, FLOPs per slice, forward+backward time.

For every registered backbone (or those named), at ``--size`` (176, the paper's crop) with its
default preset and style_dim 64:

* parameters;
* GFLOPs of one forward pass per slice, counted with ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls, convolutions, attention; 1 multiply-add = 2). A training step costs about 3x that
  (the backward is about 2x the forward). The backward is not counted: torch 2.x's counter
  ignores ``groups`` in ``convolution_backward`` and overcounts depthwise convolutions
  (ConvNeXt's 7x7) by their channel count;
* forward+backward milliseconds at ``--batch`` (8) on the CPU, and on CUDA when available in
  fp32 and in bf16 autocast (median of ``--reps`` after ``--warmup``).

    python benchmarks/bench_backbones.py                       # all, CPU (+ CUDA if present)
    python benchmarks/bench_backbones.py --device cpu --reps 3 --threads 2
    python benchmarks/bench_backbones.py --backbone swin --device cuda --json out.json

Record figures with the machine they were measured on (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

import harmonix

STYLE_DIM = 64


def count_flops(net: torch.nn.Module, size: int) -> float:
    """FLOPs of one forward pass of one slice through ``net``."""
    x = torch.rand(1, 1, size, size) * 2 - 1
    style = torch.randn(1, STYLE_DIM)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x, style)
    return float(counter.get_total_flops())


def time_step(
    net: torch.nn.Module, size: int, batch: int, device: str, reps: int, warmup: int, bf16: bool
) -> tuple[float, float]:
    """Median milliseconds of forward + backward at ``batch``, and seconds of the first step."""
    x = torch.rand(batch, 1, size, size, device=device) * 2 - 1
    style = torch.randn(batch, STYLE_DIM, device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        with autocast:
            out = net(x, style)
        out.float().square().mean().backward()
        net.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    step()  # includes torch.compile's compilation, if any
    sync()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), first


def machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", action="append", help="name (repeat); default: all")
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (at least 1)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd backbones")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.backbone or sorted(harmonix.get_host().components("backbone"))
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
    rows = []
    for name in names:
        torch.manual_seed(0)
        net = harmonix.build_backbone(name, img_size=args.size, style_dim=STYLE_DIM)
        row = {
            "backbone": name,
            "params_M": sum(p.numel() for p in net.parameters()) / 1e6,
            "gflops_fwd_per_slice": count_flops(net, args.size) / 1e9,
        }
        for device in devices:
            net.to(device).train()
            timed = torch.compile(net) if args.compile else net
            runs = [("fp32", False)] + ([("bf16", True)] if device == "cuda" else [])
            for label, bf16 in runs:
                if args.compile:
                    label += "_compiled"
                ms, first = time_step(
                    timed, args.size, args.batch, device, args.reps, args.warmup, bf16
                )
                row[f"{device}_{label}_ms"] = ms
                if args.compile:
                    row[f"{device}_{label}_first_step_s"] = first
            row[f"{device}_machine"] = machine(device)
        net.to("cpu")
        rows.append(row)
        print(json.dumps(row), flush=True)

    timing = [k for k in rows[0] if k.endswith("_ms")] if rows else []
    header = ["backbone", "params (M)", "GFLOPs per slice (fwd)"] + [
        f"{k[:-3].replace('_', ' ')} ms (batch {args.batch})" for k in timing
    ]
    print(f"\n{args.size}x{args.size}, default presets, style_dim {STYLE_DIM}")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        cells = [
            r["backbone"],
            f"{r['params_M']:.2f}",
            f"{r['gflops_fwd_per_slice']:.2f}",
        ] + [f"{r[k]:.1f}" for k in timing]
        print("| " + " | ".join(cells) + " |")
    for device in devices:
        if rows:
            print(f"{device}: {rows[0][f'{device}_machine']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
