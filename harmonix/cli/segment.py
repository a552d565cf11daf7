"""``harmonix segment train`` and ``harmonix segment predict``: a tumour segmenter plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harmonix.cli.app import app, console, fail
from harmonix.errors import HarmonixError

segment_app = typer.Typer(
    help="Train a tumour segmenter on complete cases and segment sites with it.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")


def parse_options(items: list[str]) -> dict[str, object]:
    """``["channels=4,8,16", "dropout=0"]`` -> ``{"channels": [4, 8, 16], "dropout": 0}``:
    each value is JSON, else a comma-separated list of JSON values, else a string."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option needs KEY=VALUE, got '{item}'")
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = [json.loads(v) for v in text.split(",")] if "," in text else text
            except ValueError:
                value = text
        options[key.strip()] = value
    return options


@segment_app.command("train")
def train(
    data: list[Path] = typer.Option(..., "--data", help="Site folder(s) with complete, labelled "
                                    "cases (repeat for several)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (model card + safetensors)."),
    segmenter: str = typer.Option("segresnet", "--segmenter",
                                  help="Segmenter plugin: segresnet (3D) or unet2d (2D, CPU)."),
    iters: int = typer.Option(2000, "--iters", min=1, help="Training iterations."),
    batch_size: Optional[int] = typer.Option(  # noqa: UP045
        None, "--batch-size", min=1, help="Patches or slices per step (default: the "
        "segmenter's: 2 patches for segresnet, 8 slices for unet2d)."),
    spacing: float = typer.Option(1.0, "--spacing", help="Preprocessing voxel size in mm."),
    size: Optional[int] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--size", help="In-plane crop in voxels (default: 176 mm at --spacing); use the "
        "generator's slice size to evaluate with it."),
    like: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--preprocess-like", help="A generator run whose preprocessing to use (overrides "
        "--spacing/--size), so that evaluation can fill cases with it."),
    option: list[str] = typer.Option([], "--option", help="Segmenter option KEY=VALUE, e.g. "
                                     "channels=8,16,32 or patch=64,64,64 (repeatable)."),
    lr: Optional[float] = typer.Option(  # noqa: UP045
        None, "--lr", help="Adam learning rate, cosine decay (default: the segmenter's: 1e-4 "
        "for segresnet as the BraTS bundle, 3e-3 for unet2d)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and sampling."),
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpoint in --out."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Train a segmenter on the complete, labelled cases of the given site(s)."""
    from harmonix.evaluate.segmentation import default_preprocess, read_card, train_segmenter

    try:
        config = default_preprocess(spacing, size)
        if like is not None:
            from harmonix import load_generator
            from harmonix.harmonize import preprocess_config_from_card

            config = preprocess_config_from_card(load_generator(like))
        if resume and (out / "model_card.json").exists():
            config = None  # the checkpoint's own
        train_segmenter(data, out, segmenter=segmenter, preprocess=config, iters=iters,
                        batch_size=batch_size, lr=lr, seed=seed, resume=resume, device=device,
                        options=parse_options(option))
        card = read_card(out)
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]trained[/] {card['segmenter']} to iteration {card['iteration']} "
                  f"(loss {card.get('loss', float('nan')):.4f}); checkpoint: {out}")


@segment_app.command("predict")
def predict(
    site_dir: Path = typer.Argument(..., help="Site folder to segment (read only)."),
    model: Path = typer.Option(..., "--model", help="A 'harmonix segment train' folder."),
    out: Path = typer.Option(..., "--out", help="Where OUT/CASE/CASE_seg.nii.gz are written."),
    center: Optional[str] = typer.Option(None, "--center", help="The site's center."),  # noqa: UP045
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Segment every case (labels on each case's own grid, in the site's label convention).
    Exits non-zero when any case failed."""
    from harmonix.evaluate.segmentation import predict_site
    from harmonix.progress import progress_task

    try:
        from harmonix.data.site import read_site

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
    if failed:
        fail(f"{len(failed)} case(s) failed: {', '.join(failed)}")
