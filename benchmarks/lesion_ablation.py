"""Issue 20's comparisons on the ``validate`` profile's data: evaluate one generator checkpoint
the way the ablation rows of docs/validation.md are measured, and append one JSON line of its
figures (:func:`harmonix.evaluation.targets.headline`, the lesion-code spread from its card).

``BASE`` is a folder laid out as ``harmonix demo --profile validate`` lays it out (``data/`` with
the brats and local splits, ``runs/segmenter``). The evaluation fills reference-guided by the
BraTS training cases, scores the single- and triple-missing scenarios (the four single-source
ones among them) and cross-center on up to ``--max-cases`` cases, without FID or UMAP::

    python benchmarks/lesion_ablation.py BASE runs/new-s0 reports/new-s0 --fill single \\
        --name new-s0 --table ablation.jsonl
    python benchmarks/lesion_ablation.py --summary ablation.jsonl    # mean and spread per group
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from harmonix.api import evaluate
from harmonix.evaluation.targets import headline
from harmonix.models import checkpoints as ckpt

FIGURES = ("contrast_sign_agrees", "lesion_ssim_wins", "nmi_kept", "grid_ratio_max",
           "fixed_ge_copy", "only_t2_generated", "only_t2_copy", "cross_aligned", "cross_copy",
           "spread_min")


def summary(table: Path) -> str:
    """Markdown rows: per group (the name up to ``-s<seed>``) the mean and the spread (min to
    max) of each figure over its seeds."""
    rows = [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["name"].rsplit("-s", 1)[0], []).append(row)
    lines = ["| setting | seeds | " + " | ".join(FIGURES) + " |",
             "|---|---|" + "---|" * len(FIGURES)]
    for group, members in groups.items():
        cells = []
        for key in FIGURES:
            values = [float(m[key]) for m in members if m.get(key) is not None]
            cells.append("–" if not values else
                         f"{statistics.mean(values):.3g} ({min(values):.3g}–{max(values):.3g})")
        lines.append(f"| {group} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--summary":
        print(summary(Path(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("generator", type=Path, help="a run folder or one of its checkpoints")
    parser.add_argument("out", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--table", type=Path, required=True, help="JSON lines to append to")
    parser.add_argument("--fill", choices=("single", "fused"), default="single")
    parser.add_argument("--max-cases", type=int, default=10)
    parser.add_argument("--scenarios", default="single,triple,cross-center")
    args = parser.parse_args()

    data = args.base / "data"
    began = time.perf_counter()
    evaluate(data / "brats-split" / "test", generator=args.generator,
             segmenter=args.base / "runs" / "segmenter", out=args.out,
             correlation_data=data / "brats-split" / "train",
             cross_center_data=data / "local-split" / "test", scenarios=args.scenarios,
             reference=data / "brats-split" / "train", sources="correlated", fill=args.fill,
             fid_slices=0, umap=False, overlays=0, max_cases=args.max_cases, progress=False)
    card = ckpt.read_card(ckpt.resolve_checkpoint(args.generator))
    spread = card.get("lesion_code_spread") or {}
    row = {"name": args.name, "fill": args.fill, "iteration": card.get("iteration"),
           **headline(args.out), "spread_min": spread.get("min"),
           "evaluate_min": round((time.perf_counter() - began) / 60, 1)}
    with args.table.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
