"""``harmonix demo``: the whole pipeline on built-in data, from one call.

Stages (each is skipped when its output already exists, so an interrupted demo resumes):

1. make built-in multi-center data: a BraTS-like training site, a local center with T1/T2 only,
   a held-out BraTS-like test site and a local test site;
2. train UMMGAT unpaired on both training centers;
3. harmonize: fill the missing sequences of an incomplete copy of the test site, and align the
   local test site into the BraTS domain;
4. train a segmenter on the complete training cases;
5. evaluate: missing-sequence scenarios x strategies, FID, statistics and the report.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harmonix.data.site import read_site


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
    train_options: dict[str, Any] = field(default_factory=dict)  # ModelConfig / Recipe fields
    segmenter: str = "unet2d"
    segmenter_iters: int = 300
    segmenter_options: dict[str, Any] = field(default_factory=dict)
    eval_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 1000

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
        backbone_options={"preset": "small"},
        # E, M and D at half StarGAN-v2's width: they dominate the CPU time at 64x64
        train_options={"encoder_dim": 16, "encoder_max_dim": 128, "mapper_dim": 128,
                       "lr": 3e-4, "mapper_lr": 3e-6},
        segmenter="unet2d",
        segmenter_iters=300,
        eval_options={"fid_slices": 16},
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
        backbone_options={"preset": "tiny"},
        segmenter="unet2d",
        segmenter_iters=2,
        eval_options={"fid_slices": 4, "umap": False, "scenarios": "single"},
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
) -> DemoResult:
    """Run every stage into ``out``; ``stage(title)`` is called as each begins."""
    from harmonix.data.preprocess import PreprocessConfig
    from harmonix.data.synth import synthesize_site
    from harmonix.evaluate.run import evaluate
    from harmonix.evaluate.segmentation import train_segmenter
    from harmonix.harmonize import harmonize_site
    from harmonix.plugins import get_trainer

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(out)
    announce = stage or (lambda title: None)
    data, runs = out / "data", out / "runs"
    paths = {
        "brats-train": data / "brats-train",
        "local-train": data / "local-train",
        "brats-test": data / "brats-test",
        "local-test": data / "local-test",
        "incomplete": data / "brats-test-incomplete",
        "generator": runs / "ummgat",
        "segmenter": runs / "segmenter",
        "filled": out / "harmonized" / "brats-test-incomplete",
        "aligned": out / "harmonized" / "local-test",
        "report": out / "report",
    }
    config = PreprocessConfig(spacing=prof.spacing, crop_shape=prof.crop_shape)

    announce("1/5 built-in multi-center data")
    sites = [
        ("brats-train", "brats", prof.train_cases, seed),
        ("local-train", "local", prof.local_cases, seed + 1),
        ("brats-test", "brats", prof.test_cases, seed + 2),
        ("local-test", "local", prof.local_test_cases, seed + 3),
    ]
    for key, center, n_cases, site_seed in sites:
        if not (paths[key] / "harmonix-site.json").exists():
            synthesize_site(
                paths[key], n_cases, center=center, seed=site_seed, spacing=prof.spacing
            )
    _drop_sequences(paths["brats-test"], paths["incomplete"], seed)

    announce("2/5 train UMMGAT (unpaired, two centers)")
    get_trainer("ummgat").train(
        data=[paths["brats-train"], paths["local-train"]],
        out=paths["generator"],
        backbone=prof.backbone,
        backbone_options=dict(prof.backbone_options),
        iters=prof.iters,
        batch=prof.batch,
        preprocess=config,
        pairing="unpaired",
        seed=seed,
        device=device,
        resume=True,
        checkpoint_every=prof.checkpoint_every,
        sample_every=prof.checkpoint_every,
        **prof.train_options,
    )

    announce("3/5 harmonize: fill missing sequences, align the local center")
    harmonize_site(
        paths["incomplete"],
        target="brats",
        model=paths["generator"],
        out=paths["filled"],
        device=device,
        seed=seed,
    )
    harmonize_site(
        paths["local-test"],
        target="brats",
        model=paths["generator"],
        out=paths["aligned"],
        align=True,
        device=device,
        seed=seed,
    )

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
    result = evaluate(
        paths["brats-test"],
        generator=paths["generator"],
        segmenter=paths["segmenter"],
        out=paths["report"],
        correlation_data=paths["brats-train"],
        cross_center_data=paths["local-test"],
        device=device,
        seed=seed,
        **prof.eval_options,
    )
    return DemoResult(out, result.report, summary_rows(result.results), paths)


def _finished(checkpoint: Path, iters: int) -> bool:
    """Whether a checkpoint folder's model card records at least ``iters`` iterations."""
    card = checkpoint / "model_card.json"
    return card.exists() and int(json.loads(card.read_text()).get("iteration", 0)) >= iters


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
