"""``harmonix inspect``: what a site holds, case by case, and everything wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from harmonix.cli.app import (
    QUIET,
    app,
    conclude,
    console,
    detail,
    emit_json,
    err_console,
    fail,
    grouped_problems,
    json_option,
    verbosity,
)
from harmonix.errors import HarmonixError
from harmonix.registry import load_registry


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _print_in_full(table: Table) -> None:
    """A terminal gets a table that fits; a pipe or a log gets every column in full."""
    if console.quiet:
        return
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update(width=10_000), table).maximum
    Console(file=console.file, width=max(width, console.width)).print(table)


def _fmt(values, spec: str = "") -> str:
    return "x".join(format(v, spec) for v in values)


def _case_row(case, columns: list[str]) -> list[str]:
    bad = {p.path for p in case.problems}
    cells = [escape(case.id)]
    for name, path in [*((s, case.sequences.get(s)) for s in columns), ("label", case.label)]:
        if path is None:
            cells.append("[dim]missing[/]" if name != "label" else "[dim]-[/]")
        else:
            cells.append("[red]✗[/]" if path in bad else "[green]✓[/]")
    info = case.info.get(case.reference)
    if info is None:
        cells += ["?", "?", "?"]
    else:
        cells += [_fmt(info.shape), _fmt(info.spacing, ".3g"), info.orientation]
    n = len(case.problems)
    cells.append("[green]ok[/]" if not n else f"[red]{n}[/]")
    return cells


def _print_warnings(site) -> None:
    """Warnings: what harmonix will do with a scan that works but may not give good results."""
    warnings = site.warnings
    if not warnings:
        return
    console.print(f"[bold yellow]{len(warnings)} warning{'s' * (len(warnings) != 1)} (the "
                  "cases are still harmonized):[/]")
    for line in grouped_problems(warnings, site.root):  # identical warnings once, with a count
        console.print(f"  [yellow]![/] {escape(line)}", soft_wrap=True, highlight=False)


@app.command("inspect")
def inspect_site(
    site_dir: Path = typer.Argument(..., help="The site folder (a folder of cases)."),
    center: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--center", help="Center name (default: harmonix-site.json, else the folder name)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Read headers only; skip the NaN/Inf/all-zero voxel checks."
    ),
    as_json: bool = json_option(),
) -> None:
    """Show a site's cases x sequences, every problem and every warning.

    Per case: shape, spacing, orientation. Problems (unreadable or odd files, files in DICOM,
    MGZ, NRRD or MetaImage format, with what to do) and warnings (a scan that does not look
    skull-stripped, thick or anisotropic slices).

    Exits with 1 when any problem was found (the good cases are still listed) or when the folder
    cannot be read as a site at all; warnings alone exit 0.
    """
    from harmonix.data.provenance import describe, synthetic_inputs
    from harmonix.data.site import read_site  # nibabel: only when the command runs

    try:
        registry = load_registry()
        with Progress(
            TextColumn("checking cases"), BarColumn(), MofNCompleteColumn(),
            console=err_console, transient=True,
            disable=not err_console.is_terminal or verbosity() == QUIET,
        ) as bar:
            task = bar.add_task("cases", total=None)
            site = read_site(
                site_dir, center=center, registry=registry, check_voxels=not quick,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except HarmonixError as exc:
        fail(str(exc))

    columns = site.sequences(registry)
    table = Table(
        box=box.SIMPLE_HEAVY,
        title=f"{site.root} · center {site.center} · layout {site.layout} · "
        f"labels {site.label_convention}",
        caption="shape, spacing (mm) and orientation (nibabel axis codes) of each case's "
        "reference sequence",
    )
    table.add_column("case", no_wrap=True)
    for name in [*columns, "label"]:
        table.add_column(name, justify="center", min_width=len(name))
    table.add_column("shape", no_wrap=True)
    for name in ("spacing", "orientation", "problems"):
        table.add_column(name)
    for case in site.cases:
        table.add_row(*_case_row(case, columns))
    _print_in_full(table)
    for case in site.cases:
        _print_case_detail(case, site.root)

    counts = site_counts(site, columns)
    per_sequence = ", ".join(f"{s} {n}/{counts['cases']}"
                             for s, n in counts["per_sequence"].items())
    _print_warnings(site)
    synthetic = synthetic_inputs(site)
    if synthetic and verbosity() != QUIET:
        console.print(f"[yellow]synthetic inputs[/] (made by harmonix harmonize, not real scans; "
                      f"train and segment train refuse them): {escape(describe(synthetic, 20))}",
                      soft_wrap=True, highlight=False)
    problems = site.all_problems
    emit_json(site_document(site, columns, quick, synthetic))
    if problems:
        # the problems are the command's errors: shown under --quiet too
        out = err_console if console.quiet else console
        out.print(f"[bold red]{len(problems)} problem{'s' * (len(problems) != 1)}:[/]")
        for problem in problems:
            out.print(f"  [red]✗[/] {escape(_relative(problem.path, site.root))}: "
                      f"{escape(problem.message)}", soft_wrap=True, highlight=False)
    conclude(
        f"{counts['cases']} cases: {counts['ok']} without problems, {counts['with_problems']} "
        f"with problems; {counts['complete']} with every sequence ({per_sequence}); "
        f"{counts['labelled']} with a label map" + (" (headers only: --quick)" if quick else "")
        + ("" if problems else "; [green]no problems found[/]")
    )
    if problems:
        raise typer.Exit(1)


def _print_case_detail(case, root: Path) -> None:
    """--verbose: every file of a case with its grid and data type."""
    for name, path in [*case.sequences.items(), *([("label", case.label)] if case.label else [])]:
        info = case.info.get(name)
        grid = (f"{_fmt(info.shape)} at {_fmt(info.spacing, '.3g')} mm, {info.orientation}, "
                f"{info.dtype}") if info else "not read"
        detail(f"{case.id} {name}: {_relative(path, root)} ({grid})")


def site_counts(site, columns: list[str]) -> dict:
    cases = site.cases
    return {
        "cases": len(cases),
        "ok": sum(case.ok for case in cases),
        "with_problems": sum(not case.ok for case in cases),
        "complete": sum(all(s in case.sequences for s in columns) for case in cases),
        "labelled": sum(case.label is not None for case in cases),
        "problems": len(site.all_problems),
        "warnings": len(site.warnings),
        "ignored": len(site.problems),
        "per_sequence": {s: sum(s in case.sequences for case in cases) for s in columns},
    }


def _problem(problem, case: str | None = None) -> dict:
    return {"path": str(problem.path), "kind": problem.kind, "message": problem.message,
            "case": case}


def site_document(site, columns: list[str], quick: bool,
                  synthetic: dict[str, dict[str, str]] | None = None) -> dict:
    """``harmonix inspect --json`` (docs/cli.md, Output for scripts); ``synthetic``: the
    synthetic files per case (:func:`harmonix.data.provenance.synthetic_inputs`)."""
    synthetic = synthetic or {}
    cases = []
    for case in site.cases:
        info = case.info.get(case.reference) if case.reference else None
        cases.append({
            "id": case.id,
            "status": "ok" if case.ok else "problems",
            "sequences": {name: str(path) for name, path in case.sequences.items()},
            "missing": [s for s in columns if s not in case.sequences],
            "label": str(case.label) if case.label else None,
            "reference": case.reference,
            "shape": list(info.shape) if info else None,
            "spacing": [float(v) for v in info.spacing] if info else None,
            "orientation": info.orientation if info else None,
            "problems": [_problem(p, case.id) for p in case.problems],
            "warnings": [_problem(w, case.id) for w in case.warnings],
            "synthetic": synthetic.get(case.id, {}),
        })
    return {
        "exit_code": 1 if site.all_problems else 0,
        "site": {"root": str(site.root), "center": site.center, "layout": site.layout,
                 "label_convention": site.label_convention},
        "quick": quick,
        "sequences": columns,
        "counts": site_counts(site, columns),
        "cases": cases,
        "problems": [*(_problem(p) for p in site.problems),
                     *(_problem(p, c.id) for c in site.cases for p in c.problems)],
        "warnings": [_problem(w, c.id) for c in site.cases for w in c.warnings],
    }
