"""``harmonix demo``: the whole pipeline on built-in data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harmonix.cli.app import app, conclude, console, device_option, fail
from harmonix.errors import HarmonixError


@app.command()
def demo(
    out: Path = typer.Option(Path("harmonix-demo"), "--out", help="Folder for data, runs and "
                             "the report (re-running resumes finished stages)."),
    profile: str = typer.Option("quick", "--profile", help="quick: minutes on 2 CPU cores; "
                                "validate: issue 14's validation run (quick's sizes, more "
                                "iterations and cases; under 2 hours on 2 CPU cores; writes "
                                "report/summary.csv); paper: the paper's sizes and recipe "
                                "(176x176, batch 8, 20k iterations), meant for a GPU."),
    device: str = device_option(),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, training and evaluation."),
    iters: Optional[int] = typer.Option(  # noqa: UP045
        None, "--iters", min=1, help="Training iterations of each generator (default: the "
        "profile's); a larger number on re-running continues a finished run."),
    compare_lam: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--compare-lam/--no-compare-lam", help="Also train a generator without LAM for "
        "the report's FID comparison (default: the profile's: no; doubles the "
        "training time)."),
) -> None:
    """Make built-in multi-center data, train UMMGAT unpaired, harmonize a site with missing
    sequences, train a segmenter, evaluate, and print where the report is."""
    from harmonix.demo import PROFILES, run_demo
    from harmonix.progress import shared_progress

    if profile not in PROFILES:
        fail(f"unknown profile '{profile}'; profiles are {', '.join(PROFILES)}")
    started = time.perf_counter()
    try:
        with shared_progress() as progress:  # on stderr
            def stage(title: str) -> None:
                progress.console.rule(f"[bold cyan]{title}")

            result = run_demo(out, profile=profile, device=device, seed=seed, stage=stage,
                              iters=iters, compare_lam=compare_lam)
    except HarmonixError as exc:
        fail(str(exc))
    table = Table(title="median WT Dice per scenario (missing sequences)")
    strategies = [s for s in ("complete", "copy", "generated")
                  if any(s in row for row in result.summary)]
    table.add_column("scenario")
    for strategy in strategies:
        table.add_column(strategy, justify="right")
    for row in result.summary:
        table.add_row(str(row["scenario"]),
                      *(f"{row[s]:.3f}" if s in row else "-" for s in strategies))
    console.print(table)
    minutes = (time.perf_counter() - started) / 60
    conclude(f"[green]demo finished[/] in {minutes:.1f} min. Report: [bold]{result.report}[/]")
    console.print(f"harmonized sites: {result.paths['filled']} and {result.paths['aligned']}")
    console.print(f"per-scenario medians: {result.report.parent / 'summary.csv'}")
