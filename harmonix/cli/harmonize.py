"""``harmonix harmonize``: fill missing sequences and bring a site into a target domain."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harmonix.cli.app import app, console, err_console, fail
from harmonix.errors import HarmonixError


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()] or None


def summary_table(result) -> Table:
    """One row per case: status, real / generated / aligned counts, seconds, first message."""
    table = Table(title=f"harmonize -> {result.out}")
    width = min(24, max([len(c.case) for c in result.cases] + [4]))
    table.add_column("case", no_wrap=True, min_width=width)
    for column in ("status", "real", "generated", "aligned", "seconds"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    table.add_column("message", overflow="fold", max_width=60)
    colours = {"done": "green", "skipped": "cyan", "failed": "red"}
    kinds = ("real", "generated", "aligned")
    for case in result.cases:
        counts = {s: sum(r.status == s for r in case.rows) for s in kinds}
        messages = list(dict.fromkeys(r.message for r in case.rows if r.message))
        more = f" (+{len(messages) - 1} more)" if len(messages) > 1 else ""
        table.add_row(
            case.case,
            f"[{colours[case.status]}]{case.status}[/]",
            *(str(counts[s]) for s in kinds),
            f"{case.seconds:.1f}" if case.status != "skipped" else "-",
            (messages[0] + more) if messages else "",
        )
    return table


def print_failures(result) -> None:
    for case in result.cases:
        if case.status == "failed":
            for row in case.rows:
                what = f" {row.sequence}" if row.sequence else ""
                err_console.print(f"[red]{case.case}{what}:[/] {row.message}", soft_wrap=True)


@app.command()
def harmonize(
    site_dir: Path = typer.Argument(..., help="The site folder to complete (read only)."),
    target: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--target", help="Target from registry.yaml (default: defaults.target, brats)."
    ),
    model: Path = typer.Option(..., "--model", help="A UMMGAT run directory or checkpoint."),
    out: Path = typer.Option(..., "--out", help="Where the completed site is written."),
    center: Optional[str] = typer.Option(  # noqa: UP045
        None, "--center", help="The site's center (default: harmonix-site.json or folder name)."
    ),
    align: bool = typer.Option(
        False,
        "--align/--no-align",
        help="Also translate present sequences into the target domain (to OUT/_aligned/).",
    ),
    sources: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--sources",
        help="Comma-separated source sequences, best first (default: registry source_priority).",
    ),
    reference: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--reference", help="A site of real target-domain cases giving the target style."
    ),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Slices per forward pass."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo cases already complete."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latent style codes."),
) -> None:
    """Fill each case's missing sequences (and with --align harmonize the present ones) for a
    target, on each case's own grid; synthetic volumes are flagged in the NIfTI header, a JSON
    sidecar and OUT/manifest.csv. Exits non-zero when any case failed."""
    from harmonix.harmonize import harmonize_site

    try:
        result = harmonize_site(
            site_dir,
            target=target,
            model=model,
            out=out,
            center=center,
            align=align,
            sources=_split(sources),
            reference=reference,
            device=device,
            batch_size=batch_size,
            overwrite=overwrite,
            seed=seed,
            progress=True,
        )
    except KeyboardInterrupt:
        err_console.print(
            f"[bold red]interrupted:[/] finished cases and {out / 'manifest.csv'} are kept; "
            "run again to continue"
        )
        raise typer.Exit(130) from None
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    console.print(summary_table(result))
    print_failures(result)
    done, skipped, failed = (result.count(s) for s in ("done", "skipped", "failed"))
    console.print(
        f"{done} done, {skipped} skipped (already complete), {failed} failed; "
        f"manifest: {result.manifest}"
    )
    if failed:
        fail(f"{failed} case(s) failed: {', '.join(result.failed)}")
