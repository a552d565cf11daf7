"""The ``harmonix`` command line: one typer app, one module per command group.

Every module in :mod:`harmonix.cli` (other than ``app``) adds its commands to :data:`app` when
imported; plugins add theirs through the ``register_commands(cli)`` hook.
"""

from __future__ import annotations

import importlib
import pkgutil

from harmonix.cli.app import app, console


def _load_commands() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "app" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    from harmonix.plugins import get_host

    get_host().pm.hook.register_commands(cli=app)


def main() -> None:
    _load_commands()
    app()


__all__ = ["app", "console", "main"]
