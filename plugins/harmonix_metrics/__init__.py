"""Built-in metrics: Dice and HD95 per tumour region, SSIM, PSNR and offline FID."""

from __future__ import annotations

import harmonix
from harmonix_metrics.fid import FIDMetric, fid_between, frechet_distance, inception_features
from harmonix_metrics.image import PSNRMetric, SSIMMetric, psnr, ssim
from harmonix_metrics.segmentation import (
    DiceMetric,
    HD95Metric,
    dice,
    dice_scores,
    hd95,
    hd95_scores,
    region_masks,
)

METRICS = (DiceMetric, HD95Metric, SSIMMetric, PSNRMetric, FIDMetric)

__all__ = [
    "METRICS",
    "DiceMetric",
    "FIDMetric",
    "HD95Metric",
    "PSNRMetric",
    "SSIMMetric",
    "dice",
    "dice_scores",
    "fid_between",
    "frechet_distance",
    "hd95",
    "hd95_scores",
    "inception_features",
    "psnr",
    "region_masks",
    "ssim",
]


@harmonix.hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric.name, metric)
