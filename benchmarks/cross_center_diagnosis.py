"""Why does the aligned local center segment so badly? One generator, the local center's labelled
test cases with their T2 only, and the BraTS-trained segmenter, under variants that each change
one thing of what ``harmonix evaluate``'s cross-center scenario does (median WT Dice per variant,
one CSV row each):

* ``copy``: the local T2 in all four inputs (the baseline);
* ``as-evaluated``: T1, T1ce and FLAIR generated from ``local/t2``, the T2 aligned into
  ``brats/t2`` (reference-guided by BraTS training cases);
* ``noalign``: the same, the local T2 kept as acquired;
* ``read-as-brats``: the local T2 read as ``brats/t2`` (no center translation at all);
* ``latent``: as evaluated, with the mapper's latent codes instead of the references;
* ``aligned-copy``: the aligned T2 in all four inputs (is the alignment itself the problem?);
* ``brats-t2-only``: for comparison, BraTS test cases with only their T2, the other three
  generated from ``brats/t2`` (the "only t2" scenario).

    python benchmarks/cross_center_diagnosis.py BASE GENERATOR > cross_center.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from harmonix.evaluation.metrics import SegmentationScorer, select_metrics
from harmonix.harmonization.fusion import FillPolicy
from harmonix.harmonization.translate import fill_missing, load_references, translate_volume
from harmonix.models.checkpoints import load_generator
from harmonix.registry import load_registry
from harmonix.segmentation import load_segmenter, prepare_site, segmenter_preprocess

SEQUENCES = ("t1", "t1ce", "t2", "flair")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("generator", type=Path)
    parser.add_argument("--max-cases", type=int, default=10)
    args = parser.parse_args()
    data = args.base / "data"
    seg = load_segmenter(args.base / "runs" / "segmenter")
    gen = load_generator(args.generator)
    config = segmenter_preprocess(seg)
    target = load_registry().target("brats")
    refs, _ = load_references(data / "brats-split" / "train", target, config)
    scorer = SegmentationScorer(select_metrics(["dice"]).segmentation, config.spacing,
                               regions=["WT"])
    policy = FillPolicy("single")
    scores: dict[str, list[float]] = {}

    def score(name: str, volumes, label) -> None:
        value = scorer(seg.predict(volumes), label)[("dice", "WT")]
        scores.setdefault(name, []).append(float(value))

    def fill(case, domain_center: str, references) -> dict:
        return fill_missing(case, gen, target, present=["t2"], references=references,
                            center=domain_center, policy=policy)

    local = prepare_site(data / "local-split" / "test", config, sequences=["t2"],
                         max_cases=args.max_cases)
    for case in local.cases:
        t2, mask = case.volumes["t2"], case.brain_mask
        aligned = translate_volume(t2, mask, gen, "local/t2", "brats/t2", reference=refs["t2"])
        made = fill(case, "local", refs)
        score("copy", {s: t2 for s in SEQUENCES}, case.label)
        score("as-evaluated", {**made, "t2": aligned}, case.label)
        score("noalign", {**made, "t2": t2}, case.label)
        score("aligned-copy", {s: aligned for s in SEQUENCES}, case.label)
        score("read-as-brats", {**fill(case, "brats", refs), "t2": t2}, case.label)
        latent_aligned = translate_volume(t2, mask, gen, "local/t2", "brats/t2")
        score("latent", {**fill(case, "local", None), "t2": latent_aligned}, case.label)
    brats = prepare_site(data / "brats-split" / "test", config, sequences=["t2"],
                         max_cases=args.max_cases)  # prepared from their T2 alone
    for case in brats.cases:
        score("brats-t2-only", {**fill(case, "brats", refs), "t2": case.volumes["t2"]},
              case.label)
    writer = csv.writer(sys.stdout)
    writer.writerow(["variant", "cases", "median_wt_dice", "mean_wt_dice"])
    for name, values in scores.items():
        writer.writerow([name, len(values), round(float(np.median(values)), 4),
                         round(float(np.mean(values)), 4)])


if __name__ == "__main__":
    main()
