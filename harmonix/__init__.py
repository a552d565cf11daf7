"""harmonix: fill missing MRI sequences and harmonize multi-center brain MRI with UMMGAT."""

from __future__ import annotations

from typing import Any

from harmonix.interfaces import Backbone, Generator, Metric, Segmenter, Trainer
from harmonix.plugins import build_backbone, get_host, hookimpl
from harmonix.registry import load_registry
from harmonix.version import __version__

__all__ = [
    "Backbone",
    "Generator",
    "Metric",
    "Segmenter",
    "Trainer",
    "__version__",
    "build_backbone",
    "fill_case",
    "get_host",
    "harmonize",
    "hookimpl",
    "load_generator",
    "load_registry",
]


def load_generator(path, device: str = "cpu") -> Generator:
    """Rebuild a trained generator (EMA weights) from a run directory or checkpoint."""
    from harmonix.models.checkpoints import load_generator as _load

    return _load(path, device=device)


def harmonize(*args: Any, **kwargs: Any):
    """Complete and harmonize a site; see :func:`harmonix.harmonization.pipeline.harmonize_site`."""
    from harmonix.harmonization.pipeline import harmonize_site

    return harmonize_site(*args, **kwargs)


def fill_case(*args: Any, **kwargs: Any):
    """Fill the missing sequences of one case held in memory (``{sequence: nibabel image}``);
    see :func:`harmonix.harmonization.fill.fill_case`."""
    from harmonix.harmonization.fill import fill_case as _fill_case

    return _fill_case(*args, **kwargs)
