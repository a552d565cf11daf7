"""Issue 14's ablations on a finished ``validate`` run: one row of docs/validation.md each.

Each ablation reuses the base run's data split and segmenter (``harmonix demo --profile
validate --out BASE``) and changes one thing: the generator's training (``--train KEY=VALUE``:
ModelConfig/Recipe fields such as ``mapper_lr``; ``--backbone KEY=VALUE``; ``--iters``;
``--no-lam``), or only how it fills (``--checkpoint`` of the base generator, ``--guidance``,
``--sources``). It trains into ``OUT/NAME/generator`` (resumable: run the same command again),
evaluates every scenario without FID and UMAP into ``OUT/NAME/report`` and appends the
headline figures (:func:`harmonix.evaluation.targets.headline`) to ``OUT/ablations.csv``.

    OMP_NUM_THREADS=1 nohup python benchmarks/validate_ablations.py validate-run ablations \\
        --name full-res-skip --backbone full_res_channels=16 > full-res-skip.log 2>&1 &
    python benchmarks/validate_ablations.py validate-run ablations --name iters-600 \\
        --checkpoint iter_000600
    python benchmarks/validate_ablations.py validate-run ablations --name reference \\
        --guidance reference
    python benchmarks/validate_ablations.py --table ablations/ablations.csv   # markdown rows
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from harmonix.api import evaluate
from harmonix.cli.app import parse_key_values
from harmonix.demo import PROFILES
from harmonix.evaluation.targets import headline
from harmonix.plugins import build_trainer
from harmonix.requests import TrainRequest


def markdown_rows(table: Path) -> str:
    """The rows of docs/validation.md's ablation table from ``ablations.csv``."""
    lines = []
    for row in csv.DictReader(table.open()):
        f = {k: float(v) if v not in ("", "nan") else float("nan") for k, v in row.items()
             if k not in ("name", "settings")}
        lines.append(
            f"| {row['name']} | {int(f['fixed_ge_copy'])} of {int(f['fixed'])} "
            f"| {f['random_copy']:.3f} / {f['random_generated']:.3f} "
            f"| {int(f['single_within'])} (worst {f['single_worst_gap']:.2f}) "
            f"| {int(f['multi_significant'])} of {int(f['multi'])} "
            f"| {int(f['fidelity_wins'])} of {int(f['pairs'])} "
            f"| {f['cross_aligned']:.3f} / {f['cross_unaligned']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print(markdown_rows(Path(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="a finished `harmonix demo --profile validate` run")
    parser.add_argument("out", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", default="validate")
    parser.add_argument("--train", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--backbone", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--iters", type=int)
    parser.add_argument("--no-lam", action="store_true")
    parser.add_argument("--checkpoint", help="evaluate a checkpoint instead of training: one of "
                        "the base generator's (e.g. iter_000600) or a path")
    parser.add_argument("--guidance", choices=("latent", "reference"), default="latent")
    parser.add_argument("--sources", help="source sequences in order of preference, e.g. t2,t1, "
                        "or 'correlated'")
    args = parser.parse_args()

    prof = PROFILES[args.profile]
    base, here = args.base, args.out / args.name
    data = base / "data"
    began = time.perf_counter()
    if args.checkpoint:
        generator = (Path(args.checkpoint) if "/" in args.checkpoint
                     else base / "runs" / "ummgat" / "checkpoints" / args.checkpoint)
    else:
        recipe = {**prof.recipe, **parse_key_values(args.train, "--train")}
        backbone_options = {**prof.backbone_options,
                            **parse_key_values(args.backbone, "--backbone")}
        generator = build_trainer("ummgat").train(TrainRequest(
            data=[data / "brats-split" / "train", data / "local-split" / "train"],
            out=here / "generator", backbone=prof.backbone, backbone_options=backbone_options,
            iters=args.iters or prof.iters, batch_size=prof.batch, size=prof.size,
            depth=prof.depth, spacing=prof.spacing, lam=not args.no_lam, pairing="unpaired",
            seed=0, resume=True, checkpoint_every=prof.checkpoint_every,
            sample_every=prof.checkpoint_every, recipe=recipe,
        ))
    trained = time.perf_counter()
    report = here / "report"
    evaluate(
        data / "brats-split" / "test", generator=generator, segmenter=base / "runs" / "segmenter",
        out=report, correlation_data=data / "brats-split" / "train",
        cross_center_data=data / "local-split" / "test", fid_slices=0, umap=False, overlays=0,
        reference=data / "brats-split" / "train" if args.guidance == "reference" else None,
        sources=(args.sources if args.sources == "correlated"
                 else args.sources.split(",") if args.sources else None),
    )
    row = {"name": args.name, **headline(report),
           "train_min": round((trained - began) / 60, 1),
           "evaluate_min": round((time.perf_counter() - trained) / 60, 1),
           "settings": json.dumps({k: v for k, v in vars(args).items()
                                   if k not in ("base", "out", "name") and v})}
    table = args.out / "ablations.csv"
    new = not table.exists()
    with table.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
