"""What a call of a :class:`~harmonix.interfaces.Trainer` asks for: one typed request, built once
at the boundary (``harmonix train`` builds it from its options; Python callers build it
themselves) and passed as ``Trainer.train(request)``.

Every trainer reads the same fields; what only one trainer understands goes into
:attr:`TrainRequest.options`, which that trainer checks against its own typed options (an unknown
key is an error naming it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmonix.backbones import resolve_presets

PAIRINGS = ("unpaired", "all")


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """One training run (or its continuation with ``resume``).

    ``data`` are site folders (on ``resume``: the run's own when empty). ``preset`` is the
    model preset (paper, fast, small, tiny): left ``None``, a model preset named by
    ``backbone_options["preset"]`` is the whole model's, else ``paper``
    (:func:`harmonix.backbones.resolve_presets`, the one place presets are resolved); after
    construction ``preset`` and ``backbone_options["preset"]`` always hold the resolved names.
    ``size`` x ``size`` pixel slices at ``spacing`` mm with ``depth`` slices (defaults: the paper's
    176 x 176 x 155 mm at 1 mm). Fields left ``None`` (``iters``, the checkpoint cadence) are the
    trainer's defaults, or on ``resume`` the run's own. ``recipe`` overrides recipe settings by
    name (values typed, or strings as ``--recipe`` gives them); ``options`` are the trainer's own.
    ``allow_synthetic``: trainers refuse sites holding volumes harmonize made
    (:func:`harmonix.data.provenance.refuse_synthetic`) unless it is set. ``min_coverage``:
    a new run refuses a crop that holds less of its training cases' brains
    (:func:`harmonix.harmonization.coverage.check_training_coverage`; 0 turns the check off).
    """

    out: Path
    data: Sequence[Path] = ()
    backbone: str = "swin"
    backbone_options: Mapping[str, Any] = field(default_factory=dict)
    preset: str | None = None
    iters: int | None = None
    batch_size: int = 8
    size: int | None = None
    depth: int | None = None
    spacing: float | None = None
    lam: bool = True
    pairing: str = "unpaired"
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    checkpoint_every: int | None = None
    sample_every: int | None = None
    keep_checkpoints: int | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True
    allow_synthetic: bool = False  # train on inputs harmonize flagged synthetic
    min_coverage: float | None = None  # the crop's least brain coverage (None: harmonize's 0.9)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "out", Path(self.out))
        set_(self, "data", tuple(Path(d) for d in self.data))
        preset, options = resolve_presets(self.preset, self.backbone_options)
        set_(self, "preset", preset)
        set_(self, "backbone_options", options)
        set_(self, "recipe", dict(self.recipe))
        set_(self, "options", dict(self.options))
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, "
                             f"got '{self.pairing}'")
        for name in ("iters", "batch_size", "size", "depth", "checkpoint_every",
                     "sample_every", "keep_checkpoints"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.min_coverage is not None and not 0 <= self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be within 0..1, got {self.min_coverage}")
        if self.spacing is not None and self.spacing <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")
