"""Mean intensities (0..255, on the model's grid) of white matter, CSF and each tumour region in
the real and the generated target, for held-out built-in cases: whether a contrast ratio near 1
comes from a faint tumour or from wrong healthy tissue (docs/validation.md, issue 20)::

    python benchmarks/tissue_intensities.py RUN/checkpoints/iter_002400 SITE REFERENCE_SITE \\
        --source t1 --target t2 --cases 3

SITE and REFERENCE_SITE are built-in sites written with ``--truth`` (tissue maps) or split from
one; the reference site gives the target-domain reference slices, as the evaluation does.
"""

from __future__ import annotations

import argparse

import torch

from harmonix.data.preprocess import preprocess_case
from harmonix.data.site import read_site
from harmonix.evaluation.lesion import REGIONS, TISSUES, tissue_on_grid, truth_path
from harmonix.harmonization.translate import (
    load_references,
    preprocess_config_from_card,
    resolve_target,
    translate_volume,
)
from harmonix.models.checkpoints import load_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("site")
    parser.add_argument("reference_site")
    parser.add_argument("--source", default="t1")
    parser.add_argument("--target", default="t2")
    parser.add_argument("--center", default="brats")
    parser.add_argument("--cases", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator = load_generator(args.checkpoint)
    config = preprocess_config_from_card(generator)
    references, _ = load_references(args.reference_site, resolve_target(args.center), config)
    site = read_site(args.site)
    print("case,image," + ",".join([*TISSUES, *REGIONS]))
    for case in [c for c in site.cases if c.ok][: args.cases]:
        prepared = preprocess_case(case, config)
        truth = truth_path(site.root, case.id)
        if truth is None or prepared.label is None:
            raise SystemExit(f"error: {case.id}: needs a label map and a tissue map (--truth)")
        tissue = tissue_on_grid(truth, prepared.record)
        healthy = (prepared.label == 0) & (prepared.brain_mask > 0)
        masks = {**{n: healthy & (tissue == v) for n, v in TISSUES.items()},
                 **{n: prepared.label == v for n, v in REGIONS.items()}}
        generated = translate_volume(
            prepared.volumes[args.source], prepared.brain_mask, generator,
            f"{args.center}/{args.source}", f"{args.center}/{args.target}",
            reference=references[args.target])
        for name, image in (("real", prepared.volumes[args.target]), ("generated", generated)):
            means = [f"{image[m].mean():.1f}" if m.any() else "" for m in masks.values()]
            print(f"{case.id},{name}," + ",".join(means), flush=True)


if __name__ == "__main__":
    main()
