"""``harmonix models export|install|list``: share a trained model with a site that cannot train."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from harmonix.cli.app import app, conclude, console, emit_json, json_option, warn

models_app = typer.Typer(
    help="Package a trained model, install a package, list installed models. An installed "
    "model's NAME is accepted wherever a run or segmenter folder is (--model NAME).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("export")
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="A generator run or checkpoint folder, "
                               "a 'harmonix segment train' folder, or an installed model's name."),
    out: Path = typer.Argument(..., metavar="ARCHIVE", help="The package to write (.zip)."),
    name: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None, "--name", metavar="NAME", help="The model's name (default: ARCHIVE without .zip)."),
    report: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--report", metavar="REPORT_DIR", help="A 'harmonix evaluate' output folder whose "
        "figures go into the package's README."),
    force: bool = typer.Option(False, "--force", help="Replace ARCHIVE if it exists."),
) -> None:
    """Write a model package: weights, model card (no local paths), README.md and SHA256SUMS."""
    from harmonix.models.packages import export_model  # torch: only when the command runs

    result = export_model(run, out, name=name, report=report, overwrite=force)
    for message in result.warnings:
        warn(message)
    conclude(f"[green]exported[/] {result.kind} '{escape(result.name)}' to "
             f"{escape(str(result.archive))} ({len(result.files)} files + SHA256SUMS); "
             f"install it with: harmonix models install {escape(str(result.archive))}")


@models_app.command("install")
def install(
    archive: str = typer.Argument(..., metavar="ARCHIVE", help="A package made by "
                                  "'harmonix models export': a file, or an http(s):// URL "
                                  "(with --sha256)."),
    name: Optional[str] = typer.Option(  # noqa: UP045
        None, "--name", metavar="NAME", help="Install under this name (default: the package's)."),
    force: bool = typer.Option(False, "--force", help="Replace an installed model of that name."),
    sha256: Optional[str] = typer.Option(  # noqa: UP045
        None, "--sha256", metavar="HASH", help="The package's SHA-256: checked before anything "
        "is installed (needed for an http(s) URL)."),
) -> None:
    """Verify every file's SHA-256 and install the package into the models folder
    ($HARMONIX_MODELS, else the user data folder)."""
    from harmonix.models.packages import install_model

    folder = install_model(archive, name=name, force=force, sha256=sha256)
    conclude(f"[green]installed[/] '{escape(folder.name)}' in {escape(str(folder))}; use "
             f"it with --model {escape(folder.name)}")


@models_app.command("list")
def list_(
    as_json: bool = json_option(),
) -> None:
    """List the installed models: name, kind, plugin, domains or sequences, iteration."""
    from harmonix.models.installed import models_dir
    from harmonix.models.packages import list_models

    found = list_models()
    emit_json({"exit_code": 0, "models_dir": models_dir(), "counts": {
        "models": len(found), "ok": sum(not m.problem for m in found)}, "models": [
        {"name": m.name, "path": m.path, "kind": m.kind, "plugin": m.plugin,
         "inputs": m.inputs, "preset": m.preset, "iteration": m.iteration,
         "problem": m.problem} for m in found]})
    table = Table(title=f"installed models ({escape(str(models_dir()))})")
    for column in ("name", "kind", "plugin", "domains / sequences", "preset", "iteration",
                   "status"):
        table.add_column(column)
    for m in found:
        status = f"[red]{escape(m.problem)}[/]" if m.problem else "[green]ok[/]"
        table.add_row(escape(m.name), m.kind, m.plugin, escape(", ".join(m.inputs or [])),
                      m.preset, "" if m.iteration is None else str(m.iteration), status)
    console.print(table)
    if not found:
        conclude("no model installed; add one with: harmonix models install ARCHIVE")
    else:
        conclude(f"{len(found)} installed model(s) in {escape(str(models_dir()))}")
