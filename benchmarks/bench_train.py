"""UMMGAT training speed per model preset: seconds per iteration, peak memory, TFLOP/iteration.

One iteration is StarGAN-v2's full step (D latent + D reference with R1, G+M+E latent, G
reference, EMA) with LAM on random data: batch 8, 176x176, 6 domains plus their 6 lesion
domains by default. FLOPs are counted with ``torch.utils.flop_counter`` on the meta device (the
same count as on a real device, in seconds). Modes: ``fp32``, ``bf16`` (autocast) and
``compile`` (bf16 + ``torch.compile`` of E, M, G); on the CPU only ``fp32`` by default.

    python benchmarks/bench_train.py --out bench_train.json            # paper + fast, CPU (+CUDA)
    python benchmarks/bench_train.py --device cuda --mode fp32 --mode bf16 --mode compile
    python benchmarks/bench_train.py --device cpu --preset paper --iters 1 --warmup 1

Targets on one H100/H200: ``paper`` <= 0.10 s per iteration, ``fast`` <= 0.03 s.
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
MODES = {"fp32": (False, False), "bf16": (True, False), "compile": (True, True)}


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


def model_config(args, preset: str) -> ModelConfig:
    options = dict(args.backbone_option)
    return ModelConfig(domains=DOMAINS[: args.domains], image_size=args.size, preset=preset,
                       backbone=args.backbone, backbone_options=options)


def count_flops(cfg: ModelConfig, batch: int) -> int:
    """FLOPs of one training step (fp32 graph), counted on the meta device."""
    with torch.device("meta"):
        solver = Solver(cfg, Recipe(batch=batch), "meta")
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()  # its module hooks break R1's autograd.grad
    with counter:
        solver.step(random_batch(cfg, batch).to("meta"), 0)
    return counter.get_total_flops()


def slice_gflops(cfg: ModelConfig) -> dict[str, float]:
    """Forward GFLOPs per 176x176 slice of E, M, G and D (meta device)."""
    from harmonix_ummgat.networks import build_nets

    with torch.device("meta"):
        nets = build_nets(cfg, init=False)
        x = torch.zeros(1, 1, cfg.image_size, cfg.image_size)
        y, z = torch.zeros(1, dtype=torch.long), torch.zeros(1, cfg.latent_dim)
        style = torch.zeros(1, cfg.style_dim)
    calls = {"E": lambda: nets.E(x, y), "M": lambda: nets.M(z, y),
             "G": lambda: nets.G(x, style), "D": lambda: nets.D(x, y)}
    out = {}
    for name, call in calls.items():
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            call()
        out[name] = counter.get_total_flops() / 1e9
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def bench(args, cfg: ModelConfig, device_str: str, mode: str, flops: int | None) -> dict:
    device = torch.device(device_str)
    is_cuda = device.type == "cuda"
    amp, compiled = MODES[mode]
    torch.manual_seed(0)
    solver = Solver(cfg, Recipe(batch=args.batch, lambda_ds=args.lambda_ds), device, amp=amp,
                    channels_last=is_cuda, compile=compiled)
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
    result = {
        "preset": cfg.preset, "mode": mode, "device": device_str,
        "device_name": device_name(device), "threads": torch.get_num_threads(),
        "amp_bf16": amp, "compile": compiled, "size": args.size, "batch": args.batch,
        "domains": args.domains, "lesion_domains": args.domains, "backbone": cfg.backbone,
        "backbone_options": cfg.backbone_options, "params": params,
        "seconds_per_iteration": seconds, "iterations_timed": args.iters,
        "warmup": args.warmup, "hours_for_20k": seconds * 20_000 / 3600,
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory_kind": "max allocated (CUDA)" if is_cuda else "process peak RSS",
        "flops_per_iteration": flops,
        "tflops_per_second": flops / seconds / 1e12 if flops else None,
        "torch": torch.__version__,
    }
    del solver, batch
    if is_cuda:
        torch.cuda.empty_cache()
    return result


def option(text: str) -> tuple[str, object]:
    import yaml

    key, _, value = text.partition("=")
    return key, yaml.safe_load(value)


def print_table(args, results: list[dict]) -> None:
    table = Table(title=f"UMMGAT training step: batch {args.batch}, {args.size}x{args.size}, "
                        f"{args.domains} domains + {args.domains} lesion domains")
    for column in ("preset", "device", "mode", "s/iter", "20k iters (h)", "peak MiB",
                   "TFLOP/iter", "TFLOP/s"):
        table.add_column(column, justify="right")
    for r in results:
        flops = r["flops_per_iteration"]
        table.add_row(
            r["preset"], r["device"] + (f" ({r['threads']} thr)" if r["device"] == "cpu" else ""),
            r["mode"], f"{r['seconds_per_iteration']:.3f}", f"{r['hours_for_20k']:.2f}",
            f"{r['peak_memory_mb']:.0f}", f"{flops / 1e12:.2f}" if flops else "-",
            f"{r['tflops_per_second']:.2f}" if flops else "-",
        )
    table.caption = "; ".join(sorted({f"{r['device']}: {r['device_name']}" for r in results}))
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu, cuda (repeatable); default: "
                        "cpu, plus cuda when available")
    parser.add_argument("--preset", action="append", help="model preset (repeatable); "
                        "default: paper and fast")
    parser.add_argument("--mode", action="append", choices=sorted(MODES),
                        help="repeatable; default: fp32 on the CPU, fp32, bf16, compile on CUDA")
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--domains", type=int, default=6)
    parser.add_argument("--backbone", default="swin")
    parser.add_argument("--backbone-option", type=option, action="append", default=[])
    parser.add_argument("--iters", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lambda-ds", type=float, default=0.0)
    parser.add_argument("--no-flops", dest="flops", action="store_false")
    parser.add_argument("--no-timing", dest="timing", action="store_false",
                        help="count FLOPs and parameters only")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    results, counts = [], []
    for preset in args.preset or ["paper", "fast"]:
        cfg = model_config(args, preset)
        flops = count_flops(cfg, args.batch) if args.flops else None
        counts.append({"preset": preset, "flops_per_iteration": flops,
                       "gflops_per_slice": slice_gflops(cfg) if args.flops else None})
        print(json.dumps(counts[-1]), flush=True)
        for device in devices if args.timing else []:
            modes = args.mode or (["fp32", "bf16", "compile"] if device.startswith("cuda")
                                  else ["fp32"])
            for mode in modes:
                results.append(bench(args, cfg, device, mode, flops))
                print(json.dumps(results[-1]), flush=True)
    if results:
        print_table(args, results)
    if args.out:
        args.out.write_text(json.dumps({"counts": counts, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
