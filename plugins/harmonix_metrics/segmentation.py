"""Region overlap (Dice) and boundary distance (HD95) of canonical label maps.

Label maps use harmonix's canonical values (NCR 1, ED 2, ET 4, background 0); the regions come
from the registry (WT = NCR+ED+ET, TC = NCR+ET, ET). Conventions for empty regions:

* Dice: both empty -> 1.0 (nothing to find, nothing found); one empty -> 0.0.
* HD95: both empty -> 0.0; one empty -> the diagonal of the volume in mm (the largest distance
  possible on the grid; BraTS uses 373.13 mm, the diagonal of its 240x240x155 grid).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from harmonix.sdk import Registry, SegmentationMetric, region_masks

Spacing = float | Sequence[float]


def _pairs(prediction: np.ndarray, reference: np.ndarray, registry: Registry | None):
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"shapes differ: prediction {prediction.shape}, reference {reference.shape}"
        )
    pred, ref = region_masks(prediction, registry), region_masks(reference, registry)
    return {region: (pred[region], ref[region]) for region in ref}


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    total = int(p.sum()) + int(r.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / total


def dice_scores(
    prediction: np.ndarray, reference: np.ndarray, registry: Registry | None = None
) -> dict[str, float]:
    """Dice per region, e.g. ``{"WT": 0.91, "TC": 0.85, "ET": 0.80}``."""
    pairs = _pairs(prediction, reference, registry)
    return {region: dice(p, r) for region, (p, r) in pairs.items()}


def _spacing(spacing: Spacing, ndim: int) -> tuple[float, ...]:
    values = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(map(float, spacing))
    if len(values) != ndim or min(values) <= 0:
        raise ValueError(f"spacing must be one positive number or {ndim}, got {spacing}")
    return values


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing = 1.0) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between two boolean masks (MONAI)."""
    from monai.metrics import compute_hausdorff_distance

    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    sp = _spacing(spacing, p.ndim)
    if not p.any() and not r.any():
        return 0.0
    if not p.any() or not r.any():
        return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape, sp, strict=True))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecated internal argument
        distance = compute_hausdorff_distance(
            p[None, None], r[None, None], include_background=True, percentile=95, spacing=list(sp)
        )
    return float(distance.item())


def hd95_scores(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Spacing = 1.0,
    registry: Registry | None = None,
) -> dict[str, float]:
    """HD95 (mm) per region."""
    pairs = _pairs(prediction, reference, registry)
    return {region: hd95(p, r, spacing) for region, (p, r) in pairs.items()}


class DiceMetric(SegmentationMetric):
    """Dice per region (WT, TC, ET) of a predicted against a reference canonical label map."""

    name: ClassVar[str] = "dice"
    higher_is_better: ClassVar[bool] = True

    def compute(
        self, prediction: np.ndarray, truth: np.ndarray, *, spacing: Spacing = 1.0
    ) -> dict[str, float]:
        return dice_scores(prediction, truth)  # counts voxels: the spacing does not matter


class HD95Metric(SegmentationMetric):
    """HD95 in mm per region; ``spacing`` is the voxel size (1 mm on the preprocessed grid).
    Slow, so ``harmonix evaluate`` runs it only when asked (``--hd95`` or ``--metric hd95``)."""

    name: ClassVar[str] = "hd95"
    higher_is_better: ClassVar[bool] = False
    by_default: ClassVar[bool] = False

    def __init__(self, spacing: Spacing = 1.0):
        self.spacing = spacing

    def compute(
        self, prediction: np.ndarray, truth: np.ndarray, *, spacing: Spacing | None = None
    ) -> dict[str, float]:
        return hd95_scores(prediction, truth, self.spacing if spacing is None else spacing)
