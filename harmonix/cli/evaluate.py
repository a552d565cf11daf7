"""``harmonix evaluate``: a segmenter on completed cases across missing-sequence scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from harmonix.cli.app import (
    app,
    batch_size_option,
    conclude,
    console,
    detail,
    device_option,
    emit_json,
    fail,
    json_option,
)
from harmonix.errors import HarmonixError


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", help="Test site: complete, labelled cases."),
    segmenter: Path = typer.Option(..., "--segmenter", help="A 'harmonix segment train' "
                                   "folder, or an installed segmenter's name (harmonix models "
                                   "list)."),
    out: Path = typer.Option(..., "--out", help="Report folder (results.csv, report.md, PNGs)."),
    generator: Optional[Path] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--generator", help="UMMGAT run (with LAM) for the generated strategy, FID, UMAP, "
        "or an installed generator's name (harmonix models list)."),
    scenarios: str = typer.Option(
        "all", "--scenarios", metavar="LIST",
        help="all, or a comma-separated list of single, double, triple, random, brasyn, "
             "cross-center."),
    protocol: Optional[str] = typer.Option(  # noqa: UP045
        None, "--protocol", metavar="NAME",
        help="brasyn: the BraSyn challenge's protocol only (each case loses one sequence at "
             "random, seeded; SSIM inside and outside the tumour; Dice of the completed case); "
             "the same as --scenarios brasyn."),
    strategies: str = typer.Option("complete,copy,generated", "--strategies", metavar="LIST",
                                   help="Comma-separated: complete, copy, generated."),
    generator_no_lam: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--generator-no-lam", help="A run trained without LAM, or an installed generator's "
        "name (harmonix models list): FID per sequence pair with and without the lesion-aware "
        "module."),
    cross_center_data: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--cross-center-data", help="A local center's site (T2 + labels) for cross-center."),
    correlation_data: Optional[list[Path]] = typer.Option(  # noqa: UP045
        None, "--correlation-data", help="Training site(s) to measure the copy strategy's "
        "correlations on (default: recorded in the segmenter's card, else its training sites, "
        "else the clinical mapping T1<->T1ce, T2<->FLAIR; never the test site)."),
    target: Optional[str] = typer.Option(  # noqa: UP045
        None, "--target", help="Target from registry.yaml (default: the test site's center)."),
    seed: int = typer.Option(0, "--seed", help="Seed of random missing, slice sampling, styles."),
    max_cases: Optional[int] = typer.Option(  # noqa: UP045
        None, "--max-cases", min=1, help="Use at most this many cases of each site."),
    fid_slices: int = typer.Option(64, "--fid-slices", min=0,
                                   help="Slices per FID set (0 skips FID)."),
    umap: bool = typer.Option(True, "--umap/--no-umap", help="UMAP of the sequence codes."),
    hd95: bool = typer.Option(False, "--hd95/--no-hd95", help="Also HD95 per region (slow)."),
    metric: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--metric", help="Run only this metric plugin (repeatable; see 'harmonix "
        "plugins'). Default: every registered metric except those that run only when asked "
        "(hd95)."),
    overlays: int = typer.Option(3, "--overlays", min=0, help="Cases shown as overlay PNGs."),
    sources: Optional[str] = typer.Option(  # noqa: UP045
        None, "--sources", metavar="LIST", help="Generated strategy: comma-separated source "
        "sequences, best first (default: registry source_priority), as in harmonize; or "
        "'correlated': each missing sequence from the present one most correlated with it on "
        "the training cases."),
    reference: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--reference", help="Generated strategy: a site of real target-domain cases "
        "whose style guides the generator (default: the mapper's latent codes)."),
    fill: Optional[str] = typer.Option(  # noqa: UP045
        None, "--fill", metavar="POLICY", help="Generated strategy: single or fused (from "
        "every present source, weighted), as in harmonize; default: the generator card's."),
    batch_size: int = batch_size_option(16, "Slices per generator pass."),
    allow_overlap: bool = typer.Option(
        False, "--allow-overlap", help="Evaluate even if test cases (by id or file content) are "
        "in the training data recorded in the models' cards; the report then says so at its "
        "top."),
    device: str = device_option(),
    as_json: bool = json_option(),
) -> None:
    """Evaluate a segmenter on a test site with sequences missing, copied or generated.

    Writes results.csv, statistics, figures, report.md and report.html into --out. Refuses test
    cases seen in training (see --allow-overlap)."""
    from harmonix.evaluation.request import EvaluateRequest  # torch: not for --help
    from harmonix.evaluation.run import run_evaluation
    from harmonix.evaluation.text import power_note, verdict_lines

    try:
        result = run_evaluation(EvaluateRequest(
            data=data, segmenter=segmenter, out=out, generator=generator,
            generator_no_lam=generator_no_lam,
            scenarios=_protocol_scenarios(protocol, scenarios), strategies=strategies,
            cross_center_data=cross_center_data, correlation_data=correlation_data or None,
            target=target, seed=seed, device=device, max_cases=max_cases,
            fid_slices=fid_slices, umap=umap, hd95=hd95, metrics=metric or None,
            overlays=overlays, batch_size=batch_size, sources=_sources(sources),
            reference=reference, fill=fill, allow_overlap=allow_overlap, progress=True,
        ))
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    _print_medians(result.statistics.get("medians"))
    wilcoxon = result.statistics.get("wilcoxon")
    if wilcoxon is not None and not wilcoxon.empty:
        scenario_names = list(dict.fromkeys(wilcoxon["scenario"]))
        for line in verdict_lines(wilcoxon, scenario_names):
            console.print(line.replace("**", ""), soft_wrap=True, markup=False)
        if note := power_note(wilcoxon):
            console.print(note, soft_wrap=True, markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    for key, path in result.files.items():
        detail(f"{key}: {path}")
    emit_json(evaluation_document(result))
    conclude(f"[green]report:[/] {escape(str(result.report))}")


def _protocol_scenarios(protocol: str | None, scenarios: str) -> str:
    """``--protocol brasyn`` is ``--scenarios brasyn``."""
    if protocol is None:
        return scenarios
    if protocol != "brasyn":
        raise typer.BadParameter(f"unknown protocol '{protocol}'; protocols: brasyn",
                                 param_hint="--protocol")
    return "brasyn"


def _sources(spec: str | None) -> str | list[str] | None:
    """``--sources``: None, "correlated", or a list of sequences."""
    if spec is None or spec.strip() == "correlated":
        return None if spec is None else "correlated"
    return [s.strip() for s in spec.split(",") if s.strip()]


def _print_medians(medians) -> None:
    if medians is None or medians.empty:
        return
    table = Table(title="median Dice (WT / TC / ET)")
    table.add_column("scenario")
    strategies_seen = list(dict.fromkeys(s for s, _ in medians.columns))
    for strategy in strategies_seen:
        table.add_column(strategy)
    for scenario, row in medians.iterrows():
        cells = []
        for strategy in strategies_seen:
            values = [row.get((strategy, r)) for r in ("WT", "TC", "ET")]
            cells.append(" / ".join("–" if v is None or v != v else f"{v:.2f}" for v in values))
        table.add_row(str(scenario), *cells)
    console.print(table)


def evaluation_document(result) -> dict:
    """``harmonix evaluate --json`` (docs/cli.md, Output for scripts)."""
    results = result.results
    dice = results[results["metric"] == "dice"] if "metric" in results else results
    medians = []
    table = result.statistics.get("medians")
    if table is not None and not table.empty:
        for scenario, row in table.iterrows():
            for (strategy, region), value in row.items():
                medians.append({"scenario": str(scenario), "strategy": strategy,
                                "region": region, "dice": value})
    cases = sorted({str(c) for c in dice["case"] if str(c)}) if "case" in dice else []
    scenarios = list(dict.fromkeys(str(s) for s in dice.get("scenario", [])))
    strategies = list(dict.fromkeys(str(s) for s in dice.get("strategy", [])))
    return {
        "exit_code": 0,
        "out": result.out,
        "report": result.report,
        "files": dict(result.files),
        "counts": {"cases": len(cases), "scenarios": len(scenarios),
                   "strategies": len(strategies), "results": len(results)},
        "cases": cases,
        "scenarios": scenarios,
        "strategies": strategies,
        "medians": medians,
        "tests": {name: frame.to_dict(orient="records")
                  for name, frame in result.statistics.items() if name != "medians"},
        "notes": list(result.notes),
    }
