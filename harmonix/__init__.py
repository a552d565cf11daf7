"""harmonix: fill missing MRI sequences and harmonize multi-center brain MRI with UMMGAT.

The package is lazy (PEP 562): ``import harmonix`` loads only the version, so that the CLI's
``--help``, ``--version``, ``registry`` and ``plugins`` start without torch. Each public name is
imported from its home module on first access (``harmonix.Backbone`` imports
:mod:`harmonix.interfaces`, and with it torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonix.lazy import lazy_attributes
from harmonix.version import __version__

if TYPE_CHECKING:  # what editors and type checkers see; at run time, __getattr__ below
    from harmonix.api import evaluate, fill_case, harmonize, load_generator
    from harmonix.interfaces import Backbone, Generator, Metric, Segmenter, Trainer
    from harmonix.plugins import build_backbone, get_host, hookimpl
    from harmonix.registry import load_registry

#: public name -> the module that holds it (imported on first access)
_LAZY: dict[str, str] = {
    "Backbone": "harmonix.interfaces",
    "Generator": "harmonix.interfaces",
    "Metric": "harmonix.interfaces",
    "Segmenter": "harmonix.interfaces",
    "Trainer": "harmonix.interfaces",
    "build_backbone": "harmonix.plugins",
    "get_host": "harmonix.plugins",
    "hookimpl": "harmonix.plugins",
    "load_registry": "harmonix.registry",
    "harmonize": "harmonix.api",
    "fill_case": "harmonix.api",
    "load_generator": "harmonix.api",
    "evaluate": "harmonix.api",
}

__all__ = [
    "Backbone",
    "Generator",
    "Metric",
    "Segmenter",
    "Trainer",
    "__version__",
    "build_backbone",
    "evaluate",
    "fill_case",
    "get_host",
    "harmonize",
    "hookimpl",
    "load_generator",
    "load_registry",
]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
