"""``harmonix demo``: the whole pipeline on built-in data, from one call.

Stages (each is skipped when its output already exists, so an interrupted demo resumes):

1. make built-in multi-center data: a BraTS-like site and a local center with T1/T2 only, each
   split by ``harmonix split`` (:func:`harmonix.data.split.split_site`) into training and
   held-out test cases;
2. train UMMGAT unpaired on both training centers (and, with ``compare_lam``, a second run
   without LAM for the report's FID comparison);
3. harmonize: fill the missing sequences of an incomplete copy of the test site, and align the
   local test site into the BraTS domain (reference-guided by the BraTS training cases: the
   profile's ``guidance``);
4. train a segmenter on the complete training cases;
5. evaluate: missing-sequence scenarios x strategies (generated as the profile's ``guidance`` and
   ``sources`` say), FID, image fidelity against trivial baselines, statistics and the report;
   last, ``report/summary.csv`` (per scenario and region
   the median Dice of each strategy and the Wilcoxon p of generated vs copy), whose presence
   marks the stage finished.

A run killed at any point resumes: sites are synthesized aside and renamed, the split, the
incomplete copy and harmonized volumes are written atomically, training continues from its last
checkpoint, and an unfinished evaluation is run again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harmonix.api import evaluate, harmonize
from harmonix.cards import CARD_FILE, load_card
from harmonix.data.preprocess import PreprocessConfig
from harmonix.data.site import read_site
from harmonix.data.split import split_site
from harmonix.data.synth import synthesize_site
from harmonix.evaluation.results import load_results
from harmonix.evaluation.targets import SUMMARY_FILE
from harmonix.plugins import build_trainer
from harmonix.requests import TrainRequest
from harmonix.segmentation import train_segmenter

#: training iterations of the ``validate`` profile. The ablations (docs/validation.md) improved
#: from 600 to 1200 to 1800 to 2400 iterations; 2400 is what fits 2 hours on 2 CPU cores: 1.6-2.3
#: s per iteration (1.6-1.9 s with two threads on a quiet machine, 2.3 s with one thread beside
#: other work), so 65-95 min of training, about 80-110 min in all
VALIDATE_ITERS = 2400
#: the demo profiles' Swin-Unet ends with a resize-convolution, not the paper's linear patch
#: expanding: it removes the checkerboard at the patch period (docs/validation.md, issue 20);
#: the ``paper`` profile keeps the paper's layer
RESIZE = {"final_upsample": "resize"}


@dataclass(frozen=True)
class DemoProfile:
    """Sizes of one demo run. ``quick`` fits 2 CPU cores; ``paper`` is the paper's recipe."""

    name: str
    spacing: float
    size: int
    depth: int
    train_cases: int
    local_cases: int
    test_cases: int
    local_test_cases: int
    iters: int
    batch: int
    backbone: str
    backbone_options: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)  # the trainer's recipe overrides
    segmenter: str = "unet2d"
    segmenter_iters: int = 300
    segmenter_options: dict[str, Any] = field(default_factory=dict)
    eval_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 1000
    compare_lam: bool = False  # also train a generator without LAM (the FID comparison)
    # how the generated strategy fills (docs/validation.md, ablations): style codes encoded from
    # the real training cases of the target ("reference") or from the mapper ("latent"); sources
    # per missing sequence the most correlated present one ("correlated") or the registry order
    guidance: str = "reference"
    sources: str | None = "correlated"

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.depth)


PROFILES: dict[str, DemoProfile] = {
    # 3 mm slices of 64x64: the whole pipeline in minutes on a laptop-class CPU
    "quick": DemoProfile(
        name="quick",
        spacing=3.0,
        size=64,
        depth=48,
        train_cases=16,
        local_cases=8,
        test_cases=12,
        local_test_cases=6,
        iters=600,
        batch=8,
        backbone="swin",
        # the small model preset: E, M and D at a quarter of StarGAN-v2's width (they dominate
        # the CPU time at 64x64), Swin-Unet of patch 2 and width 32; its last expansion a
        # resize-convolution (RESIZE: no checkerboard at the patch period, issue 20)
        backbone_options={"preset": "small", **RESIZE},
        recipe={"lr": 3e-4, "mapper_lr": 3e-6},
        segmenter="unet2d",
        segmenter_iters=300,
        eval_options={"fid_slices": 16},
        checkpoint_every=200,
    ),
    # issue 14's validation run: the quick sizes trained 4x longer on more cases, in under two
    # hours on 2 CPU cores (docs/validation.md); resumable like every profile.
    # The generator without LAM (FID comparison) doubles the training time: --compare-lam
    "validate": DemoProfile(
        name="validate",
        spacing=3.0,
        size=64,
        depth=48,
        train_cases=40,
        local_cases=16,
        test_cases=16,
        local_test_cases=10,
        iters=VALIDATE_ITERS,
        batch=8,
        backbone="swin",
        # quick's model preset and E/G/D learning rate; M at the recipe's (the paper's 1e-4)
        backbone_options={"preset": "small", **RESIZE},
        recipe={"lr": 3e-4},
        segmenter="unet2d",
        segmenter_iters=600,
        eval_options={"fid_slices": 32},
        checkpoint_every=200,
    ),
    # the paper: 1 mm, 176x176x155, batch 8, 20k iterations (meant for a GPU)
    "paper": DemoProfile(
        name="paper",
        spacing=1.0,
        size=176,
        depth=155,
        train_cases=120,
        local_cases=60,
        test_cases=40,
        local_test_cases=20,
        iters=20_000,
        batch=8,
        backbone="swin",
        segmenter="segresnet",
        segmenter_iters=20_000,
        eval_options={},
        checkpoint_every=1000,
    ),
    # for the test-suite: every stage, tiny
    "smoke": DemoProfile(
        name="smoke",
        spacing=6.0,
        size=32,
        depth=24,
        train_cases=4,
        local_cases=2,
        test_cases=3,
        local_test_cases=2,
        iters=2,
        batch=2,
        backbone="swin",
        backbone_options={"preset": "tiny", **RESIZE},
        segmenter="unet2d",
        segmenter_iters=2,
        eval_options={"fid_slices": 4, "umap": False, "scenarios": "single,triple"},
        checkpoint_every=2,
    ),
}


@dataclass
class DemoResult:
    out: Path
    report: Path
    summary: list[dict[str, Any]]
    paths: dict[str, Path]


def _drop_sequences(src: Path, dst: Path, seed: int) -> None:
    """Copy a site, deleting a different random subset (1 to 3) of sequences from each case."""
    if dst.exists():
        return
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    rng = np.random.default_rng(seed)
    for case in read_site(tmp).cases:
        present = sorted(case.sequences)
        n_drop = int(rng.integers(1, len(present)))
        for sequence in rng.choice(present, size=n_drop, replace=False):
            case.sequences[str(sequence)].unlink()
    tmp.rename(dst)


def run_demo(
    out: str | Path = "harmonix-demo",
    *,
    profile: str | DemoProfile = "quick",
    device: str = "cpu",
    seed: int = 0,
    stage: Callable[[str], None] | None = None,
    iters: int | None = None,
    compare_lam: bool | None = None,
) -> DemoResult:
    """Run every stage into ``out``; ``stage(title)`` is called as each begins; ``iters`` and
    ``compare_lam``, when given, override the profile's training iterations (of every generator
    trained) and whether a generator without LAM is trained too."""

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    if iters is not None:
        prof = replace(prof, iters=iters, checkpoint_every=min(prof.checkpoint_every, iters))
    if compare_lam is not None:
        prof = replace(prof, compare_lam=compare_lam)
    out = Path(out)
    announce = stage or (lambda title: None)
    data, runs = out / "data", out / "runs"
    paths = {
        "brats-train": data / "brats-split" / "train",
        "local-train": data / "local-split" / "train",
        "brats-test": data / "brats-split" / "test",
        "local-test": data / "local-split" / "test",
        "incomplete": data / "brats-test-incomplete",
        "generator": runs / "ummgat",
        "generator-no-lam": runs / "ummgat-no-lam",
        "segmenter": runs / "segmenter",
        "filled": out / "harmonized" / "brats-test-incomplete",
        "aligned": out / "harmonized" / "local-test",
        "report": out / "report",
    }
    config = PreprocessConfig(spacing=prof.spacing, crop_shape=prof.crop_shape)

    announce("1/5 built-in multi-center data")
    make_sites(data, prof, seed)
    _drop_sequences(paths["brats-test"], paths["incomplete"], seed)

    announce("2/5 train UMMGAT (unpaired, two centers)"
             + (", with and without LAM" if prof.compare_lam else ""))
    for run_dir, lam in ((paths["generator"], True), (paths["generator-no-lam"], False)):
        if lam or prof.compare_lam:
            build_trainer("ummgat").train(TrainRequest(
                data=[paths["brats-train"], paths["local-train"]], out=run_dir,
                backbone=prof.backbone, backbone_options=prof.backbone_options,
                iters=prof.iters, batch_size=prof.batch, size=prof.size, depth=prof.depth,
                spacing=prof.spacing, lam=lam, pairing="unpaired", seed=seed, device=device,
                resume=True, checkpoint_every=prof.checkpoint_every,
                sample_every=prof.checkpoint_every, recipe=prof.recipe,
            ))

    announce("3/5 harmonize: fill missing sequences, align the local center")
    reference = paths["brats-train"] if prof.guidance == "reference" else None
    for site, out_dir, align in ((paths["incomplete"], paths["filled"], False),
                                 (paths["local-test"], paths["aligned"], True)):
        harmonize(site, target="brats", model=paths["generator"], out=out_dir, align=align,
                  reference=reference, device=device, seed=seed)

    announce("4/5 train the segmenter on complete cases")
    if not _finished(paths["segmenter"], prof.segmenter_iters):
        train_segmenter(
            paths["brats-train"],
            paths["segmenter"],
            segmenter=prof.segmenter,
            preprocess=config,
            iters=prof.segmenter_iters,
            seed=seed,
            resume=True,
            device=device,
            options=dict(prof.segmenter_options),
            checkpoint_every=max(1, prof.segmenter_iters // 4),
        )

    announce("5/5 evaluate: scenarios x strategies, FID, statistics, report")
    summary_file = paths["report"] / SUMMARY_FILE
    if summary_file.exists():  # written last: the evaluation finished
        return DemoResult(out, paths["report"] / "report.md",
                          summary_rows(load_results(paths["report"])), paths)
    result = evaluate(
        paths["brats-test"],
        generator=paths["generator"],
        generator_no_lam=paths["generator-no-lam"] if prof.compare_lam else None,
        segmenter=paths["segmenter"],
        out=paths["report"],
        correlation_data=paths["brats-train"],
        cross_center_data=paths["local-test"],
        reference=reference,
        sources=prof.sources,
        device=device,
        seed=seed,
        **prof.eval_options,
    )
    return DemoResult(out, result.report, summary_rows(result.results), paths)


def make_sites(data: Path, prof: DemoProfile, seed: int = 0) -> None:
    """The profile's built-in BraTS-like and local sites (with tissue maps, which the report's
    tissue contrast needs) in ``data/brats`` and ``data/local``, each split by ``harmonix
    split`` into ``data/CENTER-split/{train,test}``; what exists is kept (resume)."""
    sites = [
        ("brats", prof.train_cases, prof.test_cases, seed),
        ("local", prof.local_cases, prof.local_test_cases, seed + 1),
    ]
    for center, n_train, n_test, site_seed in sites:
        if not (data / center / "harmonix-site.json").exists():
            # made aside and renamed: a run killed half-way makes it again on resume
            partial = data / f".{center}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            synthesize_site(partial, n_train + n_test, center=center, seed=site_seed,
                            spacing=prof.spacing, write_truth=True)
            shutil.rmtree(data / center, ignore_errors=True)
            partial.rename(data / center)
        # held-out test cases: never seen by the generator or the segmenter
        split_site(data / center, data / f"{center}-split", test=n_test, seed=seed)


def _finished(checkpoint: Path, iters: int) -> bool:
    """Whether a segmenter folder's model card (checked: :func:`harmonix.cards.load_card`)
    records at least ``iters`` iterations."""
    card = checkpoint / CARD_FILE
    return card.exists() and int(load_card(card, "segmenter").get("iteration", 0)) >= iters


def summary_rows(results) -> list[dict[str, Any]]:
    """Per scenario, the median WT Dice of each strategy (the demo's closing table)."""
    dice = results[(results["metric"] == "dice") & (results["region"] == "WT")]
    table = dice.pivot_table(
        index="scenario", columns="strategy", values="value", aggfunc="median", sort=False
    )
    return [
        {"scenario": scenario, **{k: float(v) for k, v in row.items() if v == v}}
        for scenario, row in table.iterrows()
    ]


def profile_table() -> list[dict[str, Any]]:
    return [asdict(p) for p in PROFILES.values()]
