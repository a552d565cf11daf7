"""``harmonix evaluate``: a segmenter on completed cases across missing-sequence scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harmonix.cli.app import app, console, fail
from harmonix.errors import HarmonixError


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", help="Test site: complete, labelled cases."),
    segmenter: Path = typer.Option(..., "--segmenter", help="A 'harmonix segment train' folder."),
    out: Path = typer.Option(..., "--out", help="Report folder (results.csv, report.md, PNGs)."),
    generator: Optional[Path] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--generator", help="UMMGAT run (with LAM) for the generated strategy, FID, UMAP."),
    scenarios: str = typer.Option(
        "all", "--scenarios",
        help="all, or a comma-separated list of single, double, triple, random, cross-center."),
    strategies: str = typer.Option("complete,copy,generated", "--strategies",
                                   help="Comma-separated: complete, copy, generated."),
    generator_no_lam: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--generator-no-lam", help="A run trained without LAM: FID per sequence pair with "
        "and without the lesion-aware module."),
    cross_center_data: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--cross-center-data", help="A local center's site (T2 + labels) for cross-center."),
    correlation_data: Optional[list[Path]] = typer.Option(  # noqa: UP045
        None, "--correlation-data", help="Site(s) to measure the copy strategy's correlations on "
        "(default: the segmenter's training sites, else the test site)."),
    target: Optional[str] = typer.Option(  # noqa: UP045
        None, "--target", help="Target from registry.yaml (default: the test site's center)."),
    seed: int = typer.Option(0, "--seed", help="Seed of random missing, slice sampling, styles."),
    max_cases: Optional[int] = typer.Option(  # noqa: UP045
        None, "--max-cases", min=1, help="Use at most this many cases of each site."),
    fid_slices: int = typer.Option(64, "--fid-slices", min=0,
                                   help="Slices per FID set (0 skips FID)."),
    umap: bool = typer.Option(True, "--umap/--no-umap", help="UMAP of the sequence codes."),
    hd95: bool = typer.Option(False, "--hd95/--no-hd95", help="Also HD95 per region (slow)."),
    overlays: int = typer.Option(3, "--overlays", min=0, help="Cases shown as overlay PNGs."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Slices per generator pass."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Evaluate a segmenter on a test site with sequences missing, filled by copying or by the
    generator; writes results.csv, statistics, figures and report.md into --out."""
    from harmonix.evaluate.report import power_note, verdict_lines
    from harmonix.evaluate.run import evaluate as run_evaluation

    try:
        result = run_evaluation(
            data, segmenter=segmenter, out=out, generator=generator, scenarios=scenarios,
            strategies=strategies, generator_no_lam=generator_no_lam,
            cross_center_data=cross_center_data, correlation_data=correlation_data or None,
            target=target, seed=seed, device=device, max_cases=max_cases,
            fid_slices=fid_slices, umap=umap, hd95=hd95, overlays=overlays,
            batch_size=batch_size, progress=True,
        )
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    medians = result.statistics.get("medians")
    if medians is not None and not medians.empty:
        table = Table(title="median Dice (WT / TC / ET)")
        table.add_column("scenario")
        strategies_seen = list(dict.fromkeys(s for s, _ in medians.columns))
        for strategy in strategies_seen:
            table.add_column(strategy)
        for scenario, row in medians.iterrows():
            cells = []
            for strategy in strategies_seen:
                values = [row.get((strategy, r)) for r in ("WT", "TC", "ET")]
                cells.append(" / ".join("–" if v is None or v != v else f"{v:.2f}"
                                        for v in values))
            table.add_row(str(scenario), *cells)
        console.print(table)
    wilcoxon = result.statistics.get("wilcoxon")
    if wilcoxon is not None and not wilcoxon.empty:
        scenario_names = list(dict.fromkeys(wilcoxon["scenario"]))
        for line in verdict_lines(wilcoxon, scenario_names):
            console.print(line.replace("**", ""), soft_wrap=True, markup=False)
        if note := power_note(wilcoxon):
            console.print(note, soft_wrap=True, markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"[green]report:[/] {result.report}")
