"""Tumour label maps: a site's label convention to harmonix's canonical NCR 1, ED 2, ET 4 and back.

Conventions live in ``registry.yaml: label_conventions`` (``brats2019``: 1/2/4, ``brats2023``:
1/2/3). Inside harmonix labels are always canonical; they are converted at the edges.
"""

from __future__ import annotations

import numpy as np

from harmonix.registry import LABEL_NAMES, Registry, load_registry

CANONICAL: dict[str, int] = {"NCR": 1, "ED": 2, "ET": 4}


def _convention(convention: str, registry: Registry | None) -> dict[str, int]:
    return (registry or load_registry()).label_values(convention)


def _relabel(labels, mapping: dict[int, int], what: str) -> np.ndarray:
    """Map every value through ``mapping`` (0 stays 0); unexpected or fractional values raise."""
    labels = np.asarray(labels)
    values = np.unique(labels)
    allowed = {0, *mapping}
    bad = [v for v in values.tolist() if v != int(v) or int(v) not in allowed]
    if bad:
        raise ValueError(f"label values {bad} are not in {what} (allowed: {sorted(allowed)})")
    out = np.zeros_like(labels)
    for source, target in mapping.items():
        out[labels == source] = target  # masks come from the input, so mappings never chain
    return out


def to_canonical(labels, convention: str, registry: Registry | None = None) -> np.ndarray:
    """A label map in ``convention`` (e.g. ``"brats2023"``) with canonical values 1/2/4.

    The output has the input's dtype; values outside the convention raise ``ValueError``.
    """
    values = _convention(convention, registry)
    mapping = {values[name]: CANONICAL[name] for name in LABEL_NAMES}
    return _relabel(labels, mapping, f"label convention '{convention}'")


def from_canonical(labels, convention: str, registry: Registry | None = None) -> np.ndarray:
    """A canonical (1/2/4) label map written in ``convention``'s values."""
    values = _convention(convention, registry)
    mapping = {CANONICAL[name]: values[name] for name in LABEL_NAMES}
    return _relabel(labels, mapping, "the canonical labels")


def region_masks(labels, registry: Registry | None = None) -> dict[str, np.ndarray]:
    """Boolean mask per tumour region of ``registry.yaml: regions`` (WT = NCR+ED+ET, TC = NCR+ET,
    ET) of a canonical label map; non-canonical values raise ``ValueError``."""
    registry = registry or load_registry()
    labels = np.asarray(labels)
    unknown = sorted(set(np.unique(labels).tolist()) - {0, *CANONICAL.values()})
    if unknown:
        allowed = ", ".join(map(str, [0, *CANONICAL.values()]))
        raise ValueError(
            f"label values {unknown} are not canonical ({allowed}); convert the site's labels first"
        )
    return {
        region: np.isin(labels, [CANONICAL[name] for name in members])
        for region, members in registry.regions.items()
    }
