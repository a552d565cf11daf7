"""What a training run is asked to do, as typed dataclasses instead of loose keyword arguments.

:class:`RunSettings` drive the loop (checkpoints, samples, logging, speed options); they are
recorded in the model card and kept on ``--resume`` unless given again. :class:`TrainRequest`
is one call of the trainer: data, model and recipe overrides, run settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmonix_ummgat.networks import ModelConfig
from harmonix_ummgat.recipe import Recipe, recipe_overrides

#: ModelConfig fields a caller may set (the data decide the domains and the image size).
MODEL_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig)) - {"domains", "image_size"}
#: Recipe fields a caller may set besides ``iters``, ``batch`` and ``lam``.
RECIPE_KEYS = frozenset(f.name for f in dataclasses.fields(Recipe)) - {"iters", "batch", "lam"}


@dataclass
class RunSettings:
    """How the loop runs; ``None`` in a request means "the run's own value, else the default"."""

    checkpoint_every: int = 1000
    sample_every: int = 1000
    log_every: int = 10
    keep_checkpoints: int | None = None
    amp: bool | None = None  # bf16 autocast; None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    loader_workers: int | None = None  # None: 4 on CUDA, 0 (in-process) on the CPU

    @classmethod
    def resolve(cls, given: Mapping[str, Any], recorded: Mapping[str, Any] | None) -> RunSettings:
        """The defaults, under the run's ``recorded`` settings, under the explicitly ``given``."""
        names = {f.name for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in (recorded or {}).items() if k in names}
        merged.update({k: v for k, v in given.items() if v is not None})
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainRequest:
    """One call of the ``ummgat`` trainer (see :meth:`UMMGATTrainer.train`)."""

    out: Path
    data: Sequence[Path] = ()
    dataset: Any = None
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    recipe: dict[str, Any] = field(default_factory=dict)  # Recipe fields, typed
    run: dict[str, Any] = field(default_factory=dict)  # RunSettings given explicitly
    iters: int | None = None
    batch: int = 8
    lam: bool = True
    size: int | None = None
    spacing: float | None = None
    preprocess: Any = None
    pairing: str = "unpaired"
    seed: int = 0
    resume: bool = False
    cache_dir: Path | None = None
    progress: bool = True
    callback: Callable[..., None] | None = None

    @classmethod
    def from_options(cls, out, options: Mapping[str, Any], **fields_: Any) -> TrainRequest:
        """Split free ``options`` into ModelConfig and Recipe fields; ``recipe`` (a mapping of
        ``--recipe`` strings) is typed from the Recipe fields. ``TypeError`` on unknown ones."""
        options = dict(options)
        recipe = recipe_overrides(options.pop("recipe", None) or {})
        unknown = set(options) - MODEL_KEYS - RECIPE_KEYS
        if unknown:
            raise TypeError(f"unknown training options: {', '.join(sorted(unknown))}")
        model = {k: v for k, v in options.items() if k in MODEL_KEYS}
        recipe.update({k: v for k, v in options.items() if k in RECIPE_KEYS})
        return cls(out=Path(out), model=model, recipe=recipe, **fields_)

    def new_recipe(self) -> Recipe:
        return Recipe(iters=self.iters or Recipe.iters, batch=self.batch, lam=self.lam,
                      **self.recipe)
