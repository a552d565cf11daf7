"""harmonix: fill missing MRI sequences and harmonize multi-center brain MRI with UMMGAT."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from harmonix.interfaces import Backbone, Generator, Metric, Segmenter, Trainer
from harmonix.plugins import build_backbone, get_host, hookimpl
from harmonix.registry import load_registry

try:
    __version__ = metadata.version("harmonix")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "Backbone",
    "Generator",
    "Metric",
    "Segmenter",
    "Trainer",
    "__version__",
    "build_backbone",
    "get_host",
    "harmonize",
    "hookimpl",
    "load_generator",
    "load_registry",
]


def load_generator(path, device: str = "cpu") -> Generator:
    """Rebuild a trained generator (EMA weights) from a run directory or checkpoint."""
    from harmonix.checkpoints import load_generator as _load

    return _load(path, device=device)


def harmonize(*args: Any, **kwargs: Any):
    """Complete and harmonize a site; see :func:`harmonix.harmonize.harmonize_site`."""
    from harmonix.harmonize import harmonize_site

    return harmonize_site(*args, **kwargs)
