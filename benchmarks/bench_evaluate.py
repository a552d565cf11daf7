"""Seconds per stage of ``harmonix evaluate`` (and of training the segmenter) on built-in data.

    python benchmarks/bench_evaluate.py [--spacing 3] [--size 64] [--train-cases 4]
                                        [--test-cases 6] [--local-cases 2] [--gen-iters 2]
                                        [--seg-iters 100] [--segmenter unet2d] [--fid-slices 16]
                                        [--no-umap] [--hd95] [--lam-comparison] [--threads 2]
                                        [--work DIR]

Makes a ``brats`` training site, a ``brats`` test site and a ``local`` site
(``synthesize_site``), trains a tiny UMMGAT (swin ``tiny`` preset, ``--gen-iters`` iterations:
the weights do not change the cost) and a segmenter at the same preprocessing, then evaluates
with every scenario and strategy (with ``--lam-comparison`` the same run also serves as
``--generator-no-lam``, so that the FID work of the LAM comparison is included). Prints the
segmenter's training time and the evaluation's ``timings_s`` from ``evaluation.json``: prepare,
correlations, scenarios (predictions, Dice, generation, SSIM/PSNR), cross-center, fid
(Inception features), codes (style codes + UMAP).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train-cases", type=int, default=4)
    parser.add_argument("--test-cases", type=int, default=6)
    parser.add_argument("--local-cases", type=int, default=2)
    parser.add_argument("--gen-iters", type=int, default=2)
    parser.add_argument("--seg-iters", type=int, default=100)
    parser.add_argument("--segmenter", default="unet2d")
    parser.add_argument("--fid-slices", type=int, default=16)
    parser.add_argument("--no-umap", action="store_true")
    parser.add_argument("--hd95", action="store_true")
    parser.add_argument("--lam-comparison", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from harmonix.api import evaluate
    from harmonix.data.synth import synthesize_site
    from harmonix.plugins import build_trainer
    from harmonix.requests import TrainRequest
    from harmonix.segmentation import train_segmenter
    from harmonix_ummgat.trainer import preprocess_config

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    sites = {}
    for name, center, n, seed in (("train", "brats", args.train_cases, 0),
                                  ("test", "brats", args.test_cases, 1),
                                  ("local", "local", args.local_cases, 2)):
        sites[name] = synthesize_site(work / name, n, center=center, seed=seed,
                                      spacing=args.spacing)
    config = preprocess_config(args.size, args.spacing)
    generator = build_trainer("ummgat").train(TrainRequest(
        out=work / "gen", data=[sites["train"], sites["local"]], backbone="swin",
        backbone_options={"preset": "tiny"}, iters=args.gen_iters, batch_size=2,
        size=args.size, spacing=args.spacing, pairing="all", checkpoint_every=args.gen_iters,
        sample_every=10**9, progress=False,
    ))
    start = time.perf_counter()
    segmenter = train_segmenter(sites["train"], work / "seg", segmenter=args.segmenter,
                                preprocess=config, iters=args.seg_iters, progress=False)
    seg_seconds = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(sites["test"], segmenter=segmenter, generator=generator,
             generator_no_lam=generator if args.lam_comparison else None,
             cross_center_data=sites["local"], out=work / "report",
             fid_slices=args.fid_slices, umap=not args.no_umap, hd95=args.hd95, progress=False)
    total = time.perf_counter() - start
    timings = json.loads((work / "report" / "evaluation.json").read_text())["timings_s"]
    print(json.dumps({"config": config.to_dict(), "threads": args.threads,
                      "segmenter": args.segmenter, "segmenter_train_s": round(seg_seconds, 1),
                      "seg_iters": args.seg_iters, "test_cases": args.test_cases,
                      "fid_slices": args.fid_slices, "lam_comparison": args.lam_comparison,
                      "evaluate_s": round(total, 1), "stages_s": timings, "work": str(work)},
                     indent=2))


if __name__ == "__main__":
    main()
