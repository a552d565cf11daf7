"""The ``ummgat`` trainer's own typed options and run settings.

A call of the trainer is a :class:`harmonix.requests.TrainRequest`; what only this trainer
understands comes in its ``options``, checked by :class:`UMMGATOptions`. :class:`RunSettings`
drive the loop (checkpoints, samples, logging, speed options); they are recorded in the model
card and kept on ``--resume`` unless given again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonix.sdk import TrainRequest
from harmonix_ummgat.recipe import Recipe, recipe_overrides

#: ModelConfig fields a caller may set: the widths (the request gives the preset and backbone;
#: the data decide the domains and the image size; the recipe decides D's lesion heads).
MODEL_KEYS = ("style_dim", "latent_dim", "encoder_dim", "encoder_max_dim", "mapper_dim")


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


@dataclass(kw_only=True)
class UMMGATOptions:
    """The ``ummgat`` trainer's own options: ``TrainRequest.options`` (``harmonix train
    --trainer-option KEY=VALUE``), checked here; an unknown key is an error naming it.

    Model widths left ``None`` come from the preset; run settings left ``None`` are the run's
    own on ``--resume``, else the :class:`RunSettings` defaults. ``dataset`` (a ready
    ``SliceDataset`` instead of site folders), ``cache_dir`` (default ``RUN/cache``) and
    ``callback(iteration_done, losses, solver)`` (raising stops training) are for Python callers.
    """

    style_dim: int | None = None
    latent_dim: int | None = None
    encoder_dim: int | None = None
    encoder_max_dim: int | None = None
    mapper_dim: int | None = None
    log_every: int | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    loader_workers: int | None = None
    dataset: Any = None
    cache_dir: Path | None = None
    callback: Callable[..., None] | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> UMMGATOptions:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(k) for k in unknown)} for the ummgat trainer; "
                             f"its options are {', '.join(known)}")
        return cls(**options)

    def model(self) -> dict[str, Any]:
        """The :class:`ModelConfig` fields given."""
        return {k: getattr(self, k) for k in MODEL_KEYS if getattr(self, k, None) is not None}

    def run(self, request: TrainRequest) -> dict[str, Any]:
        """The :class:`RunSettings` given by ``request`` and these options (``None``: not given)."""
        return {"checkpoint_every": request.checkpoint_every,
                "sample_every": request.sample_every,
                "keep_checkpoints": request.keep_checkpoints, "log_every": self.log_every,
                "amp": self.amp, "channels_last": self.channels_last, "compile": self.compile,
                "loader_workers": self.loader_workers}


def new_recipe(request: TrainRequest) -> Recipe:
    """A new run's recipe: the defaults, ``iters``, ``batch_size``, ``lam`` and the overrides."""
    return Recipe(iters=request.iters or Recipe.iters, batch=request.batch_size,
                  lam=request.lam, **recipe_overrides(request.recipe))
