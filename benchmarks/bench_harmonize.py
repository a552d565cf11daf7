"""Seconds per generated volume and per case, and memory across a site, for ``harmonize``.

    python benchmarks/bench_harmonize.py [--cases 2] [--distinct 2] [--spacing 1] [--size 176]
                                         [--preset fast] [--threads 2] [--device cpu]
                                         [--batch-size 16] [--keep t1] [--work DIR]

Makes ``--distinct`` built-in ``brats`` cases (``synthesize_site``; full size 240x240x155 at
1 mm by default) and a site of ``--cases`` cases from them (hard links under new case names, so
a 50-case site costs the disk of ``--distinct``), keeps only ``--keep`` per case (default t1:
three generated volumes per case), and harmonizes it to ``brats`` with an untrained UMMGAT
built at ``--size`` with the model preset ``--preset`` (``paper`` is paper-scale), saved and loaded
through the ummgat plugin as a trained run would be. Weights do not change the cost.

Reports: seconds per generated volume (``translate_volume``: batched generation of the brain
slices) and per case (reading, preprocessing, generation, ``restore``, writing), the resident
memory after each case (``/proc/self/statm``) and the peak (``getrusage``), so a 50-case run
shows whether memory stays flat. Targets (issue 6): < 60 s per case with three generated
volumes on 2 CPU cores; < 1 s per generated volume on an H100; flat memory over 50 cases.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

SEQUENCES = ("t1", "t1ce", "t2", "flair")


def rss_mib() -> float:
    """Current resident memory of this process (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def make_site(work: Path, cases: int, distinct: int, spacing: float, keep: list[str]) -> Path:
    from harmonix.data.synth import synthesize_site

    source = work / "distinct"
    if not source.exists():
        synthesize_site(source, distinct, center="brats", spacing=spacing)
    originals = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("_"))
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    shutil.copy2(source / "harmonix-site.json", site / "harmonix-site.json")
    for index in range(cases):
        original = originals[index % len(originals)]
        case_id = f"BENCH_{index:04d}"
        (site / case_id).mkdir()
        for path in original.glob("*.nii.gz"):
            suffix = path.name[len(original.name):]  # _t1.nii.gz, _seg.nii.gz
            if suffix[1:].split(".")[0] in SEQUENCES and suffix[1:].split(".")[0] not in keep:
                continue
            os.link(path, site / case_id / f"{case_id}{suffix}")
    return site


def make_model(work: Path, size: int, spacing: float, preset: str) -> Path:
    """An untrained UMMGAT (paper defaults, swin ``preset``) saved like a trained run."""
    from harmonix.models.checkpoints import save_checkpoint
    from harmonix_ummgat.networks import ModelConfig
    from harmonix_ummgat.recipe import Recipe
    from harmonix_ummgat.solver import Solver
    from harmonix_ummgat.trainer import preprocess_config

    run = work / f"run-{size}-{preset}"
    if run.exists():
        return run
    torch.manual_seed(0)
    config = ModelConfig(domains=tuple(f"brats/{s}" for s in SEQUENCES), image_size=size,
                         backbone="swin", backbone_options={"preset": preset})
    solver = Solver(config, Recipe(iters=1))
    prep = preprocess_config(size, spacing)
    card = {"trainer": "ummgat", "model": config.to_dict(), "domains": list(config.domains),
            "preprocessing": prep.to_dict()}
    save_checkpoint(run, 0, tensors=solver.state_tensors(), card=card)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--distinct", type=int, default=2, help="distinct synthetic cases")
    parser.add_argument("--spacing", type=float, default=1.0, help="mm; 1 = full size")
    parser.add_argument("--size", type=int, default=176, help="slice size of the model")
    parser.add_argument("--preset", default="fast", help="model preset: paper, fast, ...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--keep", default="t1", help="sequences kept per case (comma list)")
    parser.add_argument("--work", help="folder for data and outputs (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import harmonix
    import harmonix.harmonization.translate as hz  # make_sequence calls translate_volume

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-harmonize-"))
    work.mkdir(parents=True, exist_ok=True)
    keep = [s.strip() for s in args.keep.split(",") if s.strip()]
    t0 = time.perf_counter()
    site = make_site(work, args.cases, args.distinct, args.spacing, keep)
    run = make_model(work, args.size, args.spacing, args.preset)
    print(f"data and model ready in {time.perf_counter() - t0:.1f} s ({work})")
    generator = harmonix.load_generator(run, device=args.device)

    volume_seconds: list[float] = []
    timed = hz.translate_volume

    def timing_translate_volume(*a, **kw):
        start = time.perf_counter()
        out = timed(*a, **kw)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        volume_seconds.append(time.perf_counter() - start)
        return out

    hz.translate_volume = timing_translate_volume
    memory: list[float] = []
    cases: list[tuple[str, float, int]] = []

    def on_case(outcome) -> None:
        memory.append(rss_mib())
        cases.append((outcome.case, outcome.seconds, outcome.n_synthetic))
        print(f"{outcome.case}: {outcome.status} in {outcome.seconds:.1f} s, "
              f"{outcome.n_synthetic} generated, RSS {memory[-1]:.0f} MiB", flush=True)

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = harmonix.harmonize(site, target="brats", model=generator, out=out,
                                device=args.device, batch_size=args.batch_size, on_case=on_case)
    total = time.perf_counter() - start
    assert result.ok, [r for r in result.rows if r.status == "failed"]

    per_case = [s for _, s, _ in cases]
    figures = {
        "machine": f"{os.cpu_count()} CPU cores visible, torch threads {args.threads}, "
                   f"device {args.device}"
                   + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda")
                      else ""),
        "cases": args.cases,
        "grid": f"synthetic BraTS grid at {args.spacing} mm",
        "model": f"swin preset '{args.preset}', {args.size}x{args.size} slices",
        "generated_per_case": cases[0][2] if cases else 0,
        "seconds_per_generated_volume_median": statistics.median(volume_seconds),
        "seconds_per_case_median": statistics.median(per_case),
        "seconds_per_case_first": per_case[0],
        "seconds_total": total,
        "rss_mib_after_first_case": memory[0],
        "rss_mib_after_last_case": memory[-1],
        "peak_rss_mib": peak_rss_mib(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
