"""One metric of each kind that ``harmonix evaluate`` runs (the contracts in harmonix.sdk)."""

from __future__ import annotations

import numpy as np

from harmonix.sdk import ImageMetric, ImageSetMetric, SegmentationMetric, Spacing, region_masks


class VolumeError(SegmentationMetric):
    """Absolute difference of predicted and true region volume, in millilitres."""

    name = "volume-error"
    higher_is_better = False

    def compute(
        self, prediction: np.ndarray, truth: np.ndarray, *, spacing: Spacing = 1.0
    ) -> dict[str, float]:
        voxel_ml = float(np.prod(np.broadcast_to(spacing, (np.ndim(truth),)))) / 1000.0
        predicted, true = region_masks(prediction), region_masks(truth)
        return {region: abs(int(predicted[region].sum()) - int(true[region].sum())) * voxel_ml
                for region in true}


class MeanAbsoluteError(ImageMetric):
    """Mean absolute intensity difference (0..255 scale) of a generated and the real image."""

    name = "mae"
    higher_is_better = False

    def compute(
        self, prediction: np.ndarray, reference: np.ndarray, *, mask: np.ndarray | None = None
    ) -> float:
        difference = np.abs(np.asarray(prediction, float) - np.asarray(reference, float))
        return float(difference[mask].mean() if mask is not None else difference.mean())


class IntensityGap(ImageSetMetric):
    """How far apart two sets of slices are in mean and spread of intensity."""

    name = "intensity-gap"
    higher_is_better = False

    def features(self, slices: np.ndarray) -> np.ndarray:
        flat = np.asarray(slices, float).reshape(len(slices), -1)
        return np.stack([flat.mean(axis=1), flat.std(axis=1)], axis=1)  # one row per slice

    def distance(self, features_a: np.ndarray, features_b: np.ndarray) -> float:
        return float(np.abs(features_a.mean(axis=0) - features_b.mean(axis=0)).sum())
