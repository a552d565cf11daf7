"""A real UMMGAT run, tiny and fast, trained through the CLI for tests that need one on disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from harmonix.requests import TrainRequest

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


def train_tiny_segmenter(site: Path, out: Path, like: Path) -> Path:
    """One iteration of a narrow ``unet2d`` on ``site``, preprocessed like generator ``like``."""
    cli_ok("segment", "train", "--data", site, "--out", out, "--segmenter", "unet2d", "--iters", 1,
           "--preprocess-like", like, "--option", "channels=4,8")
    return out


def ummgat_request(out: Path, **settings: Any) -> TrainRequest:
    """A :class:`TrainRequest` for the ``ummgat`` trainer from flat test settings: request fields
    as they are (``batch`` is ``batch_size``), recipe fields into ``recipe``, the rest (widths,
    ``dataset``, ``callback``, ...) into the trainer's ``options``."""
    from harmonix_ummgat.recipe import Recipe

    fields = {f.name for f in dataclasses.fields(TrainRequest)}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    if "batch" in settings:
        settings["batch_size"] = settings.pop("batch")
    recipe = dict(settings.pop("recipe", {}))
    options = dict(settings.pop("options", {}))
    given = {k: settings.pop(k) for k in list(settings) if k in fields}
    recipe.update({k: settings.pop(k) for k in list(settings) if k in recipe_fields})
    return TrainRequest(out=out, **given, recipe=recipe, options={**options, **settings})
