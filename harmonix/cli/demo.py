"""``harmonix demo``: the whole pipeline on built-in data."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from harmonix.cli.app import app, console, fail
from harmonix.errors import HarmonixError


@app.command()
def demo(
    out: Path = typer.Option(Path("harmonix-demo"), "--out", help="Folder for data, runs and "
                             "the report (re-running resumes finished stages)."),
    profile: str = typer.Option("quick", "--profile", help="quick: minutes on 2 CPU cores; "
                                "paper: the paper's sizes and recipe (176x176, batch 8, 20k "
                                "iterations), meant for a GPU."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, training and evaluation."),
) -> None:
    """Make built-in multi-center data, train UMMGAT unpaired, harmonize a site with missing
    sequences, train a segmenter, evaluate, and print where the report is."""
    from harmonix.demo import PROFILES, run_demo
    from harmonix.progress import shared_progress

    if profile not in PROFILES:
        fail(f"unknown profile '{profile}'; profiles are {', '.join(PROFILES)}")
    started = time.perf_counter()
    try:
        with shared_progress(console) as progress:
            def stage(title: str) -> None:
                progress.console.rule(f"[bold cyan]{title}")

            result = run_demo(out, profile=profile, device=device, seed=seed, stage=stage)
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
    console.print(f"[green]demo finished[/] in {minutes:.1f} min. Report: [bold]{result.report}[/]")
    console.print(f"harmonized sites: {result.paths['filled']} and {result.paths['aligned']}")
