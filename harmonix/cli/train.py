"""``harmonix train``: train a generator (UMMGAT by default) on one or more sites."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from harmonix.cli.app import (
    app,
    batch_size_option,
    conclude,
    deprecated_option,
    device_option,
    fail,
    key_value_option,
    parse_key_values,
)
from harmonix.errors import HarmonixError
from harmonix.requests import TrainRequest


@app.command()
def train(
    data: Optional[list[Path]] = typer.Option(  # noqa: UP045
        None, "--data", metavar="SITE_DIR",
        help="A site folder; repeat for several (--resume: the run's by default).",
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="RUN_DIR", help="The run directory (checkpoints, samples, logs)."
    ),
    backbone: str = typer.Option(
        "swin", metavar="NAME", help="Generator backbone plugin (see harmonix plugins)."
    ),
    trainer: str = typer.Option("ummgat", metavar="NAME", help="Trainer plugin."),
    preset: Optional[str] = typer.Option(  # noqa: UP045
        None, help="Model preset: paper (the paper's scale, the default), fast, small or tiny; "
        "a --backbone-option preset=NAME also sets it."
    ),
    iters: Optional[int] = typer.Option(  # noqa: UP045
        None, min=1, help="Training iterations (default 20000; --resume: the run's)."
    ),
    batch_size: int = batch_size_option(8, "Slices per training step (per process)."),
    batch: Optional[int] = deprecated_option(  # noqa: UP045
        "--batch", "--batch-size", min=1, metavar="N"
    ),
    size: Optional[int] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, min=8, metavar="PIXELS",
        help="Slice size in pixels (crop size x size); default: 176 mm of view.",
    ),
    spacing: Optional[float] = typer.Option(  # noqa: UP045
        None, min=1.0, metavar="MM",
        help="Resample to this spacing in mm (coarse = quick runs); default 1.",
    ),
    lam: bool = typer.Option(True, "--lam/--no-lam", help="Lesion-aware module (LAM) losses."),
    pairing: str = typer.Option(
        "unpaired", metavar="[unpaired|all]", help="unpaired (one sequence per patient) or all."
    ),
    seed: int = typer.Option(0, help="Random seed (data pairing, sampling, initialisation)."),
    device: str = device_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    checkpoint_every: Optional[int] = typer.Option(  # noqa: UP045
        None, min=1, help="Checkpoint every N iterations (default 1000; --resume: the run's)."
    ),
    sample_every: Optional[int] = typer.Option(  # noqa: UP045
        None, min=1, help="Write a sample grid every N iterations (default 1000)."
    ),
    keep_checkpoints: Optional[int] = typer.Option(  # noqa: UP045
        None, min=1, help="Keep only the newest N checkpoints (default: all)."
    ),
    amp: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--amp/--no-amp", help="bf16 autocast (default: on for CUDA)."
    ),
    compile: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--compile/--no-compile", help="torch.compile E, M, G (default: off)."
    ),
    lambda_ds: Optional[float] = typer.Option(  # noqa: UP045
        None, metavar="WEIGHT",
        help="Style diversification weight (StarGAN-v2); same as --recipe lambda_ds=WEIGHT.",
    ),
    recipe: list[str] = key_value_option(
        "--recipe", "A recipe setting (lr, mapper_lr, lambda_sty, lambda_cyc, lambda_les, "
        "ema_beta, r1_gamma, ...; see docs/architecture.md)."
    ),
    backbone_option: list[str] = key_value_option(
        "--backbone-option", "A backbone option; the value is YAML (16, true, [1, 2]) or a "
        "comma-separated list of numbers."
    ),
    allow_synthetic: bool = typer.Option(
        False, "--allow-synthetic", help="Train even on volumes harmonize generated or "
        "aligned (refused by default: the model would learn the generator's artefacts)."
    ),
    min_coverage: Optional[float] = typer.Option(  # noqa: UP045
        None, "--min-coverage", min=0.0, max=1.0, metavar="FRACTION",
        help="Refuse a crop (--size x --spacing) that holds less of the training cases' "
        "brains than this (default: harmonize's 0.9; 0: no check)."
    ),
    trainer_option: list[str] = key_value_option(
        "--trainer-option", "An option of the trainer plugin (ummgat: style_dim, encoder_dim, "
        "log_every, loader_workers, ...; the value is YAML)."
    ),
) -> None:
    """Train UMMGAT on site folders (unpaired by default) and write checkpoints to --out.

    Under torchrun every process trains on its own batches with DDP:
    torchrun --nproc_per_node 4 -m harmonix train ...
    """

    from harmonix.plugins import build_trainer  # loads the plugins (and torch): not for --help

    options = {k: v for k, v in (("amp", amp), ("compile", compile)) if v is not None}
    options.update(parse_key_values(trainer_option, "--trainer-option"))
    settings = parse_key_values(recipe, "--recipe", typed=False)  # the trainer types them
    if lambda_ds is not None:
        settings["lambda_ds"] = str(lambda_ds)
    if not data and not resume:
        fail("give at least one --data SITE_DIR (no data yet? "
             "`harmonix synth data/brats --cases 20` makes a built-in site)")
    for site in data or []:
        if not site.is_dir():
            fail(f"{site}: not a site folder")
    try:
        request = TrainRequest(
            out=out, data=data or (), backbone=backbone,
            backbone_options=parse_key_values(backbone_option, "--backbone-option"),
            preset=preset, iters=iters, batch_size=batch or batch_size, size=size,
            spacing=spacing, lam=lam, pairing=pairing, seed=seed, device=device, resume=resume,
            checkpoint_every=checkpoint_every, sample_every=sample_every,
            keep_checkpoints=keep_checkpoints, recipe=settings, options=options,
            allow_synthetic=allow_synthetic, min_coverage=min_coverage,
        )
        run_dir = build_trainer(trainer).train(request)
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    conclude(f"[green]done[/]: {escape(str(run_dir))} (use it with --model "
             f"{escape(str(run_dir))}, or load it with harmonix.load_generator)")
