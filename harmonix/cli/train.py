"""``harmonix train``: train a generator (UMMGAT by default) on one or more sites."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harmonix.cli.app import app, console, fail
from harmonix.errors import HarmonixError


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``["embed_dim=16", "depths=[1,1]"]`` -> ``{"embed_dim": 16, "depths": [1, 1]}`` (YAML)."""
    import yaml

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--backbone-option takes KEY=VALUE, got '{pair}'")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@app.command()
def train(
    data: Optional[list[Path]] = typer.Option(  # noqa: UP045
        None, "--data", help="A site folder; repeat for several (--resume: the run's by default)."
    ),
    out: Path = typer.Option(..., "--out", help="The run directory (checkpoints, samples, logs)."),
    backbone: str = typer.Option("swin", help="Generator backbone plugin (see harmonix plugins)."),
    trainer: str = typer.Option("ummgat", help="Trainer plugin."),
    iters: int = typer.Option(20_000, min=1, help="Training iterations."),
    batch: int = typer.Option(8, min=1, help="Batch size (per process)."),
    size: Optional[int] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, min=8, help="Slice size in pixels (crop size x size); default: 176 mm of view."
    ),
    spacing: Optional[float] = typer.Option(  # noqa: UP045
        None, min=1.0, help="Resample to this spacing in mm (coarse = quick runs); default 1."
    ),
    lam: bool = typer.Option(True, "--lam/--no-lam", help="Lesion-aware module (LAM) loss."),
    pairing: str = typer.Option("unpaired", help="unpaired (one sequence per patient) or all."),
    seed: int = typer.Option(0, help="Random seed (data pairing, sampling, initialisation)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1 or auto."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    checkpoint_every: int = typer.Option(1000, min=1, help="Checkpoint every N iterations."),
    sample_every: int = typer.Option(1000, min=1, help="Write a sample grid every N iterations."),
    keep_checkpoints: Optional[int] = typer.Option(  # noqa: UP045
        None, min=1, help="Keep only the newest N checkpoints (default: all)."
    ),
    amp: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--amp/--no-amp", help="bf16 autocast (default: on for CUDA)."
    ),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile E, M, G."),
    lambda_ds: float = typer.Option(0.0, help="Style diversification weight (StarGAN-v2)."),
    backbone_option: list[str] = typer.Option(
        [], "--backbone-option", help="Backbone option KEY=VALUE (YAML value); repeatable."
    ),
) -> None:
    """Train UMMGAT on site folders (unpaired by default) and write checkpoints to --out.

    Under torchrun every process trains on its own batches with DDP:
    ``torchrun --nproc_per_node 4 -m harmonix train ...``.
    """
    from harmonix.plugins import get_trainer

    if pairing not in ("unpaired", "all"):
        fail(f"--pairing must be 'unpaired' or 'all', got '{pairing}'")
    if not data and not resume:
        fail("give at least one --data SITE_DIR (no data yet? "
             "`harmonix synth data/brats --cases 20` makes a built-in site)")
    for site in data or []:
        if not site.is_dir():
            fail(f"{site}: not a site folder")
    try:
        options = parse_options(backbone_option)
        run_dir = get_trainer(trainer).train(
            data=data or None, out=out, backbone=backbone, backbone_options=options, iters=iters,
            batch=batch, size=size, spacing=spacing, lam=lam, pairing=pairing, seed=seed,
            device=_device(device), resume=resume, checkpoint_every=checkpoint_every,
            sample_every=sample_every, keep_checkpoints=keep_checkpoints, amp=amp,
            compile=compile, lambda_ds=lambda_ds,
        )
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]done[/]: {run_dir} (load it with harmonix.load_generator)")
