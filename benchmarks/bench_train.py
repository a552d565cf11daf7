"""UMMGAT training speed: seconds per iteration, peak memory and FLOPs per iteration.

One iteration is StarGAN-v2's full step (D latent + D reference with R1, G+M+E latent, G
reference, EMA) on random data: batch 8, 176x176, 6 domains plus their 6 lesion domains by
default. Runs on the CPU and, when one is available, on CUDA (bf16 autocast, channels_last).

    python benchmarks/bench_train.py --out bench_train.json            # CPU (+ CUDA if present)
    python benchmarks/bench_train.py --device cuda --compile --iters 50 --out gpu.json
    python benchmarks/bench_train.py --device cpu --iters 2 --warmup 1 --size 176

Target: <= 0.08 s per iteration on one H100 (20k iterations in under 30 minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from harmonix_ummgat.networks import ModelConfig
from harmonix_ummgat.recipe import Recipe
from harmonix_ummgat.solver import Batch, Solver

DOMAINS = ("brats/t1", "brats/t1ce", "brats/t2", "brats/flair", "local/t1", "local/t2",
           "ucsf/t1", "ucsf/t2", "ucsf/swi", "ucsf/dwi")


class _NoModuleTracking:
    """Count everything under "Global" without FlopCounterMode's per-module backward hooks."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def random_batch(cfg: ModelConfig, batch: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n, size = cfg.num_domains, cfg.image_size

    def images():
        return torch.rand(batch, 1, size, size, generator=g) * 2 - 1

    def lesions():
        mask = torch.zeros(batch, 1, size, size)
        mask[:, :, size // 3: size // 2, size // 3: size // 2] = 1
        return mask

    return Batch(images(), torch.randint(n, (batch,), generator=g), lesions(),
                 torch.randint(n, (batch,), generator=g), images(), images(), lesions(),
                 lesions(), torch.randn(batch, cfg.latent_dim, generator=g),
                 torch.randn(batch, cfg.latent_dim, generator=g))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(args, device_name: str) -> dict:
    device = torch.device(device_name)
    is_cuda = device.type == "cuda"
    amp = is_cuda if args.amp is None else args.amp
    cfg = ModelConfig(domains=DOMAINS[: args.domains], image_size=args.size,
                      backbone=args.backbone, backbone_options=dict(args.backbone_option))
    torch.manual_seed(0)
    solver = Solver(cfg, Recipe(batch=args.batch, lambda_ds=args.lambda_ds), device, amp=amp,
                    channels_last=is_cuda, compile=args.compile)
    batch = random_batch(cfg, args.batch).to(device, is_cuda)
    params = {k: sum(p.numel() for p in net.parameters())
              for k, net in solver.modules.named().items()}

    for it in range(args.warmup):
        solver.step(batch, it)
    sync(device)
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for it in range(args.iters):
        solver.step(batch, args.warmup + it)
    sync(device)
    seconds = (time.perf_counter() - start) / args.iters

    flops = None
    if args.flops:
        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _NoModuleTracking()  # its module hooks break R1's autograd.grad
        with counter:
            solver.step(batch, 0)
        flops = counter.get_total_flops()
    return {
        "device": device_name,
        "device_name": torch.cuda.get_device_name(device) if is_cuda else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(),
        "amp_bf16": amp,
        "compile": args.compile,
        "size": args.size,
        "batch": args.batch,
        "domains": args.domains,
        "lesion_domains": args.domains,
        "backbone": args.backbone,
        "backbone_options": dict(args.backbone_option),
        "params": params,
        "seconds_per_iteration": seconds,
        "iterations_timed": args.iters,
        "hours_for_20k": seconds * 20_000 / 3600,
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory_kind": "max allocated (CUDA)" if is_cuda else "process peak RSS",
        "flops_per_iteration": flops,
        "tflops_per_second": flops / seconds / 1e12 if flops else None,
        "torch": torch.__version__,
    }


def option(text: str) -> tuple[str, object]:
    import yaml

    key, _, value = text.partition("=")
    return key, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu, cuda (repeatable); default: "
                        "cpu, plus cuda when available")
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--domains", type=int, default=6)
    parser.add_argument("--backbone", default="swin")
    parser.add_argument("--backbone-option", type=option, action="append", default=[])
    parser.add_argument("--iters", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lambda-ds", type=float, default=0.0)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-flops", dest="flops", action="store_false")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    results = [bench(args, d) for d in devices]
    table = Table(title=f"UMMGAT training step: batch {args.batch}, {args.size}x{args.size}, "
                        f"{args.domains} domains + {args.domains} lesion domains")
    for column in ("device", "bf16", "compile", "s/iter", "20k iters (h)", "peak MiB",
                   "GFLOP/iter", "TFLOP/s"):
        table.add_column(column, justify="right")
    for r in results:
        flops = r["flops_per_iteration"]
        table.add_row(
            r["device"] + (f" ({r['threads']} threads)" if r["device"] == "cpu" else ""),
            str(r["amp_bf16"]), str(r["compile"]), f"{r['seconds_per_iteration']:.3f}",
            f"{r['hours_for_20k']:.2f}", f"{r['peak_memory_mb']:.0f}",
            f"{flops / 1e9:.1f}" if flops else "-",
            f"{r['tflops_per_second']:.2f}" if flops else "-",
        )
    table.caption = "; ".join(f"{r['device']}: {r['device_name']}" for r in results)
    Console(width=120).print(table)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
