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

from harmonix.cli.app import app, console, fail
from harmonix.errors import HarmonixError


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _print_in_full(table: Table) -> None:
    """A terminal gets a table that fits; a pipe or a log gets every column in full."""
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


@app.command("inspect")
def inspect_site(
    site_dir: Path = typer.Argument(..., help="The site folder (a folder of cases)."),
    center: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--center", help="Center name (default: harmonix-site.json, else the folder name)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Read headers only; skip the NaN/Inf/all-zero voxel checks."
    ),
) -> None:
    """Show a site's cases x sequences (shape, spacing, orientation) and every problem found.

    Exits with 1 when any problem was found (the good cases are still listed), 2 when the folder
    cannot be read as a site at all.
    """
    from harmonix.data.site import read_site
    from harmonix.registry import load_registry

    try:
        registry = load_registry()
        with Progress(
            TextColumn("checking cases"), BarColumn(), MofNCompleteColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        ) as bar:
            task = bar.add_task("cases", total=None)
            site = read_site(
                site_dir, center=center, registry=registry, check_voxels=not quick,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except HarmonixError as exc:
        fail(str(exc), code=2)

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

    complete = sum(all(s in case.sequences for s in columns) for case in site.cases)
    ok = sum(case.ok for case in site.cases)
    counts = ", ".join(
        f"{s} {sum(s in c.sequences for c in site.cases)}/{len(site.cases)}" for s in columns
    )
    labelled = sum(case.label is not None for case in site.cases)
    console.print(
        f"{len(site.cases)} cases: {ok} without problems, {len(site.cases) - ok} with problems; "
        f"{complete} with every sequence ({counts}); {labelled} with a label map"
        + (" (headers only: --quick)" if quick else ""),
        soft_wrap=True,
    )
    problems = site.all_problems
    if not problems:
        console.print("[green]no problems found[/]")
        return
    console.print(f"[bold red]{len(problems)} problem{'s' * (len(problems) != 1)}:[/]")
    for problem in problems:
        console.print(
            f"  [red]✗[/] {escape(_relative(problem.path, site.root))}: {escape(problem.message)}",
            soft_wrap=True, highlight=False,
        )
    raise typer.Exit(1)
