"""Issue 20's training runs on the ``validate`` profile's data, seed by seed.

``prepare BASE`` makes what the profile's demo makes before training (the built-in BraTS-like
and local sites with tissue maps, their ``harmonix split``, the UNet-2D segmenter on the complete
training cases); ``train BASE RUN --seed S --iters N [KEY=VALUE ...]`` trains one generator as
the profile does, with ModelConfig/Recipe fields (``lambda_les_adv=0``, ``lambda_struct=1``) or
backbone options (``bb.full_res_channels=16``, ``bb.final_upsample=resize``) changed. Both
resume after a kill. Then
``benchmarks/lesion_ablation.py`` evaluates each run and ``benchmarks/lesion_code_spread.py``
measures its lesion codes::

    OMP_NUM_THREADS=2 python benchmarks/lesion_runs.py prepare base
    OMP_NUM_THREADS=2 nohup python benchmarks/lesion_runs.py train base runs/new-s0 --seed 0 \\
        --iters 600 > new-s0.log 2>&1 &
    python benchmarks/lesion_runs.py train base runs/paper-lam-s0 --seed 0 --iters 600 \\
        les_stop_grad=false lambda_les_adv=0 lambda_les_var=0 lambda_les_con=0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harmonix.data.preprocess import PreprocessConfig
from harmonix.demo import PROFILES, make_sites
from harmonix.plugins import build_trainer
from harmonix.requests import TrainRequest
from harmonix.segmentation import train_segmenter

PROFILE = PROFILES["validate"]


def prepare(base: Path, seed: int = 0) -> None:
    make_sites(base / "data", PROFILE, seed)
    config = PreprocessConfig(spacing=PROFILE.spacing, crop_shape=PROFILE.crop_shape)
    train_segmenter(base / "data" / "brats-split" / "train", base / "runs" / "segmenter",
                    segmenter=PROFILE.segmenter, preprocess=config,
                    iters=PROFILE.segmenter_iters, seed=seed, resume=True, device="cpu",
                    options=dict(PROFILE.segmenter_options),
                    checkpoint_every=max(1, PROFILE.segmenter_iters // 4))


def train(base: Path, run: Path, seed: int, iters: int, settings: list[str]) -> None:
    pairs = dict(item.split("=", 1) for item in settings)
    backbone = {k[3:]: int(v) if v.isdigit() else v for k, v in pairs.items()
                if k.startswith("bb.")}
    recipe = {k: v for k, v in pairs.items() if not k.startswith("bb.")}
    data = base / "data"
    began = time.perf_counter()
    build_trainer("ummgat").train(TrainRequest(
        data=[data / "brats-split" / "train", data / "local-split" / "train"], out=run,
        backbone=PROFILE.backbone, backbone_options={**PROFILE.backbone_options, **backbone},
        iters=iters, batch_size=PROFILE.batch, size=PROFILE.size, depth=PROFILE.depth,
        spacing=PROFILE.spacing, pairing="unpaired", seed=seed, resume=True,
        checkpoint_every=200, sample_every=200, progress=False,
        recipe={**PROFILE.recipe, **recipe}, options={"cache_dir": base / "cache"}))
    print(f"trained {run} in {time.perf_counter() - began:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("base", type=Path)
    run = commands.add_parser("train")
    run.add_argument("base", type=Path)
    run.add_argument("run", type=Path)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--iters", type=int, default=600)
    run.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    args, extra = parser.parse_known_args()  # KEY=VALUE settings may follow --seed and --iters
    if extra and (args.command == "prepare" or any("=" not in item for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "prepare":
        prepare(args.base)
    else:
        train(args.base, args.run, args.seed, args.iters, args.settings + extra)


if __name__ == "__main__":
    main()
