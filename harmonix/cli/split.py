"""``harmonix split``: a site's cases into training and test sites (links or copies)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from harmonix.cli.app import app, conclude, detail, fail
from harmonix.errors import HarmonixError


@app.command()
def split(
    site: Path = typer.Argument(..., metavar="SITE_DIR",
                                help="The site to split (only read, never changed)."),
    out: Path = typer.Option(..., "--out", help="New folder: train/, test/ and split.json."),
    test: float = typer.Option(0.2, "--test", metavar="FRACTION|N",
                               help="Fraction of cases for testing (0.2: the paper's 4:1 "
                               "split), or a whole number of cases."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random assignment."),
    copy: bool = typer.Option(False, "--copy/--link", help="Copy the files instead of "
                              "symbolic links to them."),
) -> None:
    """Split a site's cases at random into a training and a test site.

    OUT_DIR/train and OUT_DIR/test are sites of symbolic links (or copies); OUT_DIR/split.json
    records the split and each file's content hash."""
    from harmonix.data.split import split_site  # nibabel: only when the command runs

    try:
        result = split_site(site, out, test=test, seed=seed, copy=copy)
    except (HarmonixError, ValueError, OSError) as exc:
        fail(str(exc))
    record = result.record
    what = "already there (same settings)" if result.reused else record["mode"]
    for part in ("train", "test"):
        detail(f"{part}: {', '.join(record[part])}")
    conclude(f"{len(record['train'])} training and {len(record['test'])} test cases "
             f"({what}): [bold]{escape(str(result.train))}[/] and "
             f"[bold]{escape(str(result.test))}[/]; split recorded in "
             f"{escape(str(result.out / 'split.json'))}")
