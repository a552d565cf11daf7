"""The typer app and the console every command prints to."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="harmonix",
    help="Fill missing MRI sequences and harmonize multi-center brain MRI with UMMGAT.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from harmonix import __version__

        console.print(f"harmonix {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    registry: Optional[Path] = typer.Option(  # noqa: UP045 - typer needs Optional on 3.10
        None,
        "--registry",
        envvar="HARMONIX_REGISTRY",
        help="A user registry.yaml merged over the built-in one.",
    ),
) -> None:
    """harmonix command line."""
    if registry is not None:
        import os

        os.environ["HARMONIX_REGISTRY"] = str(registry)


def fail(message: str, code: int = 1) -> None:
    """Print an error in red and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
