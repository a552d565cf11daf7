"""``harmonix segment train`` and ``harmonix segment predict``: a tumour segmenter plugin.

The workflow is :mod:`harmonix.segmentation`; it and the model loaders (torch) are imported in
the commands, so that starting the CLI (``harmonix --version``, ``--help``) does not import them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from harmonix.cards import CARD_FILE
from harmonix.cli.app import (
    QUIET,
    app,
    batch_size_option,
    conclude,
    console,
    device_option,
    err_console,
    fail,
    key_value_option,
    parse_key_values,
    verbosity,
)
from harmonix.errors import HarmonixError
from harmonix.progress import progress_task

segment_app = typer.Typer(
    help="Train a tumour segmenter on complete cases and segment sites with it.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")


@segment_app.command("train")
def train(
    data: list[Path] = typer.Option(..., "--data", help="Site folder(s) with complete, labelled "
                                    "cases (repeat for several)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (model card + safetensors)."),
    segmenter: str = typer.Option(
        "segresnet", "--segmenter", metavar="NAME", help="Segmenter plugin: segresnet (3D), "
        "unet2d (2D, CPU) or any other registered one (harmonix plugins)."),
    iters: int = typer.Option(2000, "--iters", min=1, help="Training iterations."),
    batch_size: Optional[int] = batch_size_option(  # noqa: UP045
        None, "Patches or slices per step (default: the segmenter's: 2 patches for segresnet, "
        "8 slices for unet2d)."),
    spacing: float = typer.Option(1.0, "--spacing", metavar="MM",
                                  help="Preprocessing voxel size in mm."),
    size: Optional[int] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--size", help="In-plane crop in voxels (default: 176 mm at --spacing); use the "
        "generator's slice size to evaluate with it.", metavar="VOXELS"),
    like: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--preprocess-like", help="A generator run, or an installed generator's name "
        "(harmonix models list), whose preprocessing to use (overrides --spacing/--size), so "
        "that evaluation can fill cases with it.", metavar="MODEL"),
    option: list[str] = key_value_option("--option", "A segmenter option, e.g. channels=8,16,32 "
                                         "or patch=64,64,64."),
    lr: Optional[float] = typer.Option(  # noqa: UP045
        None, "--lr", help="Adam learning rate, cosine decay (default: the segmenter's: 1e-4 "
        "for segresnet as the BraTS bundle, 3e-3 for unet2d).", metavar="LR"),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and sampling."),
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpoint in --out."),
    device: str = device_option(),
) -> None:
    """Train a segmenter on the complete, labelled cases of the given site(s)."""
    from harmonix.harmonization.translate import preprocess_config_from_card
    from harmonix.models.checkpoints import load_generator, read_card
    from harmonix.segmentation import default_preprocess, train_segmenter

    options = parse_key_values(option, "--option")
    skipped: list[str] = []

    def report_skipped(site: Path, case: str, reason: str) -> None:
        if verbosity() != QUIET:
            if not skipped:
                err_console.print("[yellow]skipped cases[/] (not used for training):")
            err_console.print(f"  {site}/{case}: {reason}", markup=False, soft_wrap=True)
        skipped.append(case)

    try:
        config = default_preprocess(spacing, size)
        if like is not None:
            config = preprocess_config_from_card(load_generator(like))
        if resume and (out / CARD_FILE).exists():
            config = None  # the checkpoint's own
        train_segmenter(data, out, segmenter=segmenter, preprocess=config, iters=iters,
                        batch_size=batch_size, lr=lr, seed=seed, resume=resume, device=device,
                        options=options, on_skipped=report_skipped)
        card = read_card(out, "segmenter")
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    conclude(f"[green]trained[/] {card['segmenter']} to iteration {card['iteration']} "
             f"(loss {card.get('loss', float('nan')):.4f}), {len(skipped)} case(s) skipped; "
             f"checkpoint: {escape(str(out))}")


@segment_app.command("predict")
def predict(
    site_dir: Path = typer.Argument(..., help="Site folder to segment (read only)."),
    model: Path = typer.Option(..., "--model", help="A 'harmonix segment train' folder, or an "
                               "installed segmenter's name (harmonix models list)."),
    out: Path = typer.Option(..., "--out", help="Where OUT/CASE/CASE_seg.nii.gz are written."),
    center: Optional[str] = typer.Option(None, "--center", help="The site's center."),  # noqa: UP045
    device: str = device_option(),
) -> None:
    """Segment every case (labels on each case's own grid, in the site's label convention).
    Exits non-zero when any case failed."""
    from harmonix.data.site import read_site  # nibabel, torch: only when the command runs
    from harmonix.models.checkpoints import read_card
    from harmonix.segmentation import predict_site

    try:
        read_card(model, "segmenter")  # a bad --model is reported before the site is read
        total = len(read_site(site_dir, center=center, check_voxels=False).cases)
        with progress_task("segment", total=total) as advance:
            rows = predict_site(site_dir, model, out, device=device, center=center,
                                on_case=lambda row: advance(1, case=row.case))
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"segment -> {out}")
    for column in ("case", "status", "file / message"):
        table.add_column(column)
    for row in rows:
        colour = "green" if row.status == "done" else "red"
        table.add_row(row.case, f"[{colour}]{row.status}[/]", row.file or row.message)
    console.print(table)
    failed = [r.case for r in rows if r.status != "done"]
    conclude(f"{len(rows) - len(failed)} case(s) segmented, {len(failed)} failed; labels in "
             f"{escape(str(out))}")
    if failed:
        fail(f"{len(failed)} case(s) failed: {', '.join(failed)}")
