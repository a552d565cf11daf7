"""A real UMMGAT run, tiny and fast, trained through the CLI for tests that need one on disk."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

SPACING, SIZE = 6.0, 32


def cli_ok(*args) -> str:
    """Run ``harmonix ARGS`` in-process; its output, after checking it exited 0."""
    from harmonix.cli import _load_commands, app

    _load_commands()
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def train_tiny_run(site: Path, run: Path, spacing: float = SPACING, size: int = SIZE) -> Path:
    """One training iteration of the tiny preset on ``site`` (all sequences, no LAM)."""
    cli_ok("train", "--data", site, "--out", run, "--iters", 1, "--batch-size", 2, "--size", size,
           "--spacing", spacing, "--pairing", "all", "--no-lam", "--device", "cpu",
           "--checkpoint-every", 1, "--sample-every", 1000, "--backbone-option", "preset=tiny")
    return run
