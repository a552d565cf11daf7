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
    EXIT_ERROR,
    EXIT_PARTIAL,
    QUIET,
    app,
    batch_size_option,
    conclude,
    console,
    device_option,
    emit_json,
    err_console,
    fail,
    json_option,
    key_value_option,
    parse_key_values,
    verbosity,
)
from harmonix.errors import HarmonixError
from harmonix.harmonization.options import MIN_COVERAGE
from harmonix.progress import progress_task


def _shard(value: str | None):  # -> Shard | None; as harmonize's --shard
    try:
        from harmonix.harmonization.shards import Shard  # nibabel: only when the option is given

        return Shard.parse(value) if value is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


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
    allow_synthetic: bool = typer.Option(
        False, "--allow-synthetic", help="Train even on volumes harmonize generated or aligned "
        "(refused by default: the model would learn the generator's artefacts)."),
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
                        options=options, on_skipped=report_skipped,
                        allow_synthetic=allow_synthetic)
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
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo cases already segmented (harmonix's own outputs only)."),
    min_coverage: float = typer.Option(
        MIN_COVERAGE, "--min-coverage", min=0.0, max=1.0, metavar="FRACTION",
        help="Fail a case when the model's field of view holds less of its brain than this."),
    shard: Optional[str] = typer.Option(  # noqa: UP045
        None, "--shard", metavar="K/N", callback=_shard,
        help="Do only shard K of N (K = 1..N): the cases at positions K-1, K-1+N, ... of the "
             "sorted case ids; writes OUT/predictions.shard-K-of-N.csv."),
    as_json: bool = json_option(),
) -> None:
    """Segment every case (labels on each case's own grid, in the site's label convention).

    Exit codes: 0 all done, 1 error (every case failed, or nothing could start), 2 usage error,
    3 partial (some cases failed; the others are written)."""
    from harmonix.data.site import read_site  # nibabel, torch: only when the command runs
    from harmonix.models.checkpoints import read_card
    from harmonix.segmentation import predict_site

    try:
        read_card(model, "segmenter")  # a bad --model is reported before the site is read
        site = read_site(site_dir, center=center, check_voxels=False)
        total = len(shard.select(site.cases) if shard else site.cases)
        with progress_task("segment", total=total) as advance:
            rows = predict_site(site_dir, model, out, device=device, center=center,
                                on_case=lambda row: advance(1, case=row.case),
                                min_coverage=min_coverage, shard=shard, overwrite=overwrite)
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"segment -> {out}" + (f" (shard {shard})" if shard else ""))
    for column in ("case", "status", "file / message"):
        table.add_column(column)
    colours = {"done": "green", "skipped": "cyan"}
    for row in rows:
        colour = colours.get(row.status, "red")
        text = row.file or row.message
        if row.synthetic_inputs:
            text += f" (synthetic inputs: {row.synthetic_inputs})"
        table.add_row(row.case, f"[{colour}]{row.status}[/]", escape(text))
    console.print(table)
    failed = [r.case for r in rows if r.status == "failed"]
    code = EXIT_ERROR if failed and len(failed) == len(rows) else EXIT_PARTIAL if failed else 0
    emit_json({
        "exit_code": code, "site": str(site.root), "out": str(out),
        "shard": str(shard) if shard else None,
        "counts": {"cases": len(rows),
                   **{s: sum(r.status == s for r in rows) for s in ("done", "skipped", "failed")}},
        "cases": [{**vars(r), "file": str(out / r.file) if r.file else None,
                   "coverage": float(r.coverage) if r.coverage else None,
                   "synthetic_inputs": r.synthetic_inputs.split(",") if r.synthetic_inputs
                   else []} for r in rows],
        "failed": failed,
    })
    done = sum(r.status == "done" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    conclude(f"{done} case(s) segmented, {skipped} skipped (already done), {len(failed)} failed; "
             f"labels in {escape(str(out))}")
    if failed:
        fail(f"{len(failed)} case(s) failed: {', '.join(failed)}", code=code)
