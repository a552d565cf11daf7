"""``harmonix manifest merge``: join the manifest parts of a sharded harmonize run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from harmonix.cli.app import app, conclude, err_console

manifest_app = typer.Typer(
    help="Work with the manifest of a harmonized site (OUT/manifest.csv).",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")


@manifest_app.command("merge")
def merge(
    out: Path = typer.Argument(..., metavar="OUT", help="The --out folder of the sharded runs."),
) -> None:
    """Join OUT/manifest.shard-K-of-N.csv (K = 1..N, written by 'harmonix harmonize --shard K/N')
    into OUT/manifest.csv, rows sorted by case as an unsharded run writes them. Refuses (exit 1,
    nothing written) when a part is missing (named, with the --shard that writes it), parts
    disagree on N, a case is in two parts, or OUT/manifest.csv is not harmonix's."""
    from harmonix.harmonization.shards import merge_manifest  # only when the command runs

    merged = merge_manifest(out)
    conclude(f"merged {len(merged.parts)} parts ({len(merged.cases)} cases, "
             f"{len(merged.rows)} rows) into {escape(str(merged.manifest))}")
    if merged.failed:
        err_console.print(f"[yellow]warning:[/] {len(merged.failed)} case(s) failed: "
                          f"{escape(', '.join(merged.failed))} (see the manifest's message "
                          "column)", soft_wrap=True)
