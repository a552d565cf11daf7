"""Benchmark ``harmonix synth``: full-size cases (240 x 240 x 155, 1 mm) per second.

Target (issue 3): 20 full-size cases in under 60 s on 2 CPU cores.

    python benchmarks/bench_synth.py                    # 20 brats cases, one worker per core
    python benchmarks/bench_synth.py --cases 4 --workers 1 --profile   # where the time goes
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from harmonix.data.anatomy import load_template, template_smoothing
from harmonix.data.synth import synthesize_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--center", default="brats")
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=None, help="keep the site here")
    parser.add_argument("--profile", action="store_true", help="cProfile (use --workers 1)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_synth_"))
    start = time.perf_counter()
    load_template(template_smoothing(args.spacing))
    loaded = time.perf_counter() - start
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    start, cpu = time.perf_counter(), os.times()
    synthesize_site(out, args.cases, center=args.center, spacing=args.spacing,
                    workers=args.workers)
    elapsed = time.perf_counter() - start
    end = os.times()
    cpu_s = sum(getattr(end, f) - getattr(cpu, f)
                for f in ("user", "system", "children_user", "children_system"))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    size = sum(p.stat().st_size for p in out.rglob("*.nii.gz")) / 2**20
    print(f"center {args.center}, spacing {args.spacing} mm, {args.workers} worker(s), "
          f"{os.cpu_count()} CPU(s)")
    print(f"template load: {loaded:.1f} s (once per process)")
    print(f"{args.cases} cases in {elapsed:.1f} s = {elapsed / args.cases:.2f} s per case; "
          f"{size:.0f} MiB written; {cpu_s / args.cases:.2f} CPU s per case")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (other work on the machine "
          "slows the wall time)")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
