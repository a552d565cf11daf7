"""``harmonix harmonize``: fill missing sequences and bring a site into a target domain."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harmonix.cli.app import (
    EXIT_ERROR,
    EXIT_PARTIAL,
    app,
    conclude,
    console,
    detail,
    device_option,
    emit_json,
    err_console,
    fail,
    grouped_problems,
    json_option,
    warn,
)
from harmonix.errors import HarmonixError
from harmonix.harmonization.options import INTENSITY_MODES, MIN_COVERAGE, OUTPUT_LAYOUTS, POLICIES

Intensity = Enum("Intensity", {m: m for m in INTENSITY_MODES}, type=str)
Layout = Enum("Layout", {m: m for m in OUTPUT_LAYOUTS}, type=str)
Fill = Enum("Fill", {m: m for m in POLICIES}, type=str)


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()] or None


def _shard(value: str | None):  # -> Shard | None
    try:
        from harmonix.harmonization.shards import Shard  # nibabel: only when the option is given

        return Shard.parse(value) if value is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def summary_table(result) -> Table:
    """One row per case: status, real / generated / aligned counts, seconds, first message."""
    shard = f" (shard {result.shard})" if result.shard else ""
    table = Table(title=f"harmonize -> {result.out}{shard}")
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


def print_site_problems(site) -> None:
    """What of the site is read as no case, and the cases' warnings, before any work starts."""
    for line in grouped_problems([*site.problems, *site.warnings], site.root):
        warn(line)  # silenced by --quiet; identical warnings once, with a count


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
    model: Path = typer.Option(..., "--model", help="A UMMGAT run directory or checkpoint, or "
                               "an installed model's name (harmonix models list)."),
    out: Path = typer.Option(..., "--out", help="Where the completed site is written."),
    center: Optional[str] = typer.Option(  # noqa: UP045
        None, "--center", help="The site's center (default: harmonix-site.json or folder name)."
    ),
    align: bool = typer.Option(
        False,
        "--align/--no-align",
        help="Also translate present sequences into the target domain (to OUT/_aligned/).",
    ),
    merge_aligned: bool = typer.Option(
        False, "--merge-aligned",
        help="With --align (implied): aligned volumes take the real files' places in the case "
             "folders; the real copies go to each case's _original/ folder.",
    ),
    intensity: Intensity = typer.Option(
        "input", "--intensity",
        help="Scale of generated and aligned volumes: input (the real counterpart's scale and "
             "dtype; docs/data.md) or model (float32 0..255).",
    ),
    layout: Layout = typer.Option(
        "target", "--layout",
        help="target (the target's file names) or bids (a BIDS derivatives dataset in "
             "OUT/derivatives/harmonix/).",
    ),
    sources: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--sources",
        help="Comma-separated source sequences, best first (default: registry source_priority).",
    ),
    reference: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--reference", help="A site of real target-domain cases giving the target style."
    ),
    fill: Optional[Fill] = typer.Option(  # noqa: UP045
        None, "--fill",
        help="single (each missing sequence from its most correlated source) or fused (from "
             "every present source, weighted); default: the model card's fill policy.",
    ),
    confidence: bool = typer.Option(
        False, "--confidence",
        help="Also write, for each sequence fused from two or more sources, the per-voxel "
             "spread across them (CASE/_confidence/, flagged synthetic; not a probability).",
    ),
    device: str = device_option(),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Slices per forward pass."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo cases already complete (harmonix's own outputs only)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the latent style codes."),
    min_coverage: float = typer.Option(
        MIN_COVERAGE, "--min-coverage", min=0.0, max=1.0, metavar="FRACTION",
        help="Fail a case when the model's field of view holds less of its brain than this.",
    ),
    shard: Optional[str] = typer.Option(  # noqa: UP045
        None, "--shard", metavar="K/N", callback=_shard,
        help="Do only shard K of N (K = 1..N): the cases at positions K-1, K-1+N, ... of the "
             "sorted case ids; writes OUT/manifest.shard-K-of-N.csv. The shard that writes the "
             "last part merges them into OUT/manifest.csv (else: harmonix manifest merge OUT).",
    ),
    resample: bool = typer.Option(
        False, "--resample",
        help="Resample sequences on another grid than the case's reference sequence onto it "
             "(else such a case fails); real files are copied as they are, synthetic ones are "
             "written on the reference sequence's grid.",
    ),
    run: Optional[str] = typer.Option(  # noqa: UP045
        None, "--run", metavar="LABEL",
        help="BIDS: of several runs of one sequence in a case (run-1, run-2), use this one.",
    ),
    as_json: bool = json_option(),
) -> None:
    """Fill each case's missing sequences and bring a site into a target domain.

    With --align the present sequences are translated too. Cases are written on their own grids;
    synthetic volumes are flagged in the NIfTI header, a JSON sidecar and OUT/manifest.csv.
    Never replaces what harmonix did not write. Exit codes: 0 all done, 1 error (nothing
    written; when every case failed, only OUT/manifest.csv with the reasons), 2 usage error,
    3 partial (some cases failed or some files of the site were ignored; the others are
    written)."""

    from harmonix.harmonization.pipeline import harmonize_site  # torch: not for --help
    from harmonix.harmonization.request import HarmonizeRequest

    sites = []  # the site as read, for --json

    def on_site(site) -> None:
        sites.append(site)
        print_site_problems(site)

    try:
        result = harmonize_site(HarmonizeRequest(
            site=site_dir, model=model, out=out, target=target, center=center, align=align,
            merge_aligned=merge_aligned, sources=_split(sources), reference=reference,
            device=device, batch_size=batch_size, seed=seed, overwrite=overwrite,
            min_coverage=min_coverage, intensity=intensity.value, layout=layout.value,
            fill=fill.value if fill else None, confidence=confidence, shard=shard,
            resample=resample, run=run, progress=True, on_site=on_site,
        ))
    except KeyboardInterrupt:
        manifest = out / (shard.part_name if shard else "manifest.csv")
        err_console.print(
            f"[bold red]interrupted:[/] finished cases and {manifest} are kept; "
            "run again to continue"
        )
        raise typer.Exit(130) from None
    except (HarmonixError, ValueError) as exc:
        fail(str(exc))
    console.print(summary_table(result))
    print_failures(result)
    for case in result.cases:
        for row in case.rows:
            detail(f"{case.case} {row.sequence or '-'}: {row.status} {row.file} {row.message}")
    done, skipped, failed = (result.count(s) for s in ("done", "skipped", "failed"))
    emit_json(harmonize_document(result, sites[0] if sites else None))
    if result.merged:
        console.print(f"merged {len(result.merged.parts)} manifest parts into "
                      f"{result.merged.manifest}")
    elif result.shard:
        console.print(f"the site manifest is written once all {result.shard.count} shards are "
                      f"done: by the last one, or by 'harmonix manifest merge {out}'")
    conclude(f"{done} done, {skipped} skipped (already complete), {failed} failed; "
             f"manifest: {result.manifest}")
    if failed and failed == len(result.cases):
        fail(f"every case failed: {', '.join(result.failed)}")
    if failed:
        fail(f"{failed} case(s) failed: {', '.join(result.failed)}", code=EXIT_PARTIAL)
    if result.ignored:
        fail(f"{len(result.ignored)} file(s) or folder(s) of the site were ignored (listed "
             "above); the cases are written", code=EXIT_PARTIAL)


def exit_code(result) -> int:
    """0 all done; 1 every case failed; 3 some failed or some files of the site were ignored."""
    failed = result.count("failed")
    if failed and failed == len(result.cases):
        return EXIT_ERROR
    return EXIT_PARTIAL if failed or result.ignored else 0


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def harmonize_document(result, site) -> dict:
    """``harmonix harmonize --json`` (docs/cli.md, Output for scripts)."""
    kinds = ("real", "generated", "aligned", "original")
    cases = []
    for case in result.cases:
        cases.append({
            "case": case.case, "status": case.status, "seconds": round(case.seconds, 3),
            "files": [{"sequence": r.sequence, "status": r.status, "source": r.source,
                       "file": str(result.out / r.file) if r.file else None,
                       "coverage": _number(r.coverage),
                       "message": r.message} for r in case.rows],
        })
    rows = result.rows
    return {
        "exit_code": exit_code(result),
        "site": str(site.root) if site is not None else None,
        "out": result.out,
        "manifest": result.manifest,
        "shard": str(result.shard) if result.shard else None,
        "merged_manifest": result.merged.manifest if result.merged else None,
        "counts": {"cases": len(result.cases),
                   **{s: result.count(s) for s in ("done", "skipped", "failed")},
                   "ignored": len(result.ignored),
                   "warnings": len(site.warnings) if site is not None else 0,
                   **{k: sum(r.status == k for r in rows) for k in kinds}},
        "cases": cases,
        "failed": result.failed,
        "ignored": [{"path": str(p.path), "kind": p.kind, "message": p.message}
                    for p in result.ignored],
        "warnings": [{"path": str(w.path), "kind": w.kind, "message": w.message}
                     for w in (site.warnings if site is not None else [])],
    }
