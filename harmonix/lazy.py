"""PEP 562 lazy attributes: the one implementation behind ``harmonix`` and ``harmonix.sdk``, whose
names are imported from their home modules on first access (so ``import harmonix`` stays without
torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_attributes(
    module: str, namespace: MutableMapping[str, Any], homes: Mapping[str, str],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``module``: a name of ``homes`` (name -> home module) is
    imported on first access, with every other name of the same home, and bound in
    ``namespace`` (the module's globals) so that later accesses skip ``__getattr__``."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module '{module}' has no attribute '{name}'")
        found = importlib.import_module(home)
        namespace.update({n: getattr(found, n) for n, h in homes.items() if h == home})
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
