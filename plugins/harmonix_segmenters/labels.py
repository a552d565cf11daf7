"""Canonical label maps (0, NCR 1, ED 2, ET 4) to network targets and back.

* regions (SegResNet, as MONAI's BraTS bundle): three nested channels WT, TC, ET, from
  ``registry.yaml: regions``;
* classes (the 2D U-Net): one index per voxel, 0 background, 1 NCR, 2 ED, 3 ET.
"""

from __future__ import annotations

import numpy as np

from harmonix.sdk import CANONICAL
from harmonix.sdk import region_masks as canonical_region_masks

REGIONS = ("WT", "TC", "ET")
CLASS_LABELS = (0, CANONICAL["NCR"], CANONICAL["ED"], CANONICAL["ET"])  # class index -> label


def region_masks(labels: np.ndarray) -> np.ndarray:
    """``(3, *shape)`` bool masks WT, TC, ET of a canonical label map."""
    masks = canonical_region_masks(labels)
    return np.stack([masks[region] for region in REGIONS])


def regions_to_labels(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    """Canonical labels from region masks: ET where ET, NCR where TC but not ET, ED where WT but
    not TC (the BraTS bundle's post-processing read the other way round)."""
    labels = np.zeros(np.shape(wt), np.uint8)
    labels[np.asarray(wt, bool)] = CANONICAL["ED"]
    labels[np.asarray(tc, bool)] = CANONICAL["NCR"]
    labels[np.asarray(et, bool)] = CANONICAL["ET"]
    return labels


def labels_to_classes(labels: np.ndarray) -> np.ndarray:
    """Class indices 0..3 of a canonical label map; other values raise ``ValueError``."""
    labels = np.asarray(labels)
    lookup = np.full(max(CLASS_LABELS) + 1, -1, np.int64)
    lookup[list(CLASS_LABELS)] = np.arange(len(CLASS_LABELS))
    bad = np.setdiff1d(np.unique(labels), CLASS_LABELS)
    if bad.size:
        raise ValueError(f"label values {bad.tolist()} are not canonical (0, 1, 2, 4)")
    return lookup[labels.astype(np.int64)]


def classes_to_labels(classes: np.ndarray) -> np.ndarray:
    """Canonical labels from class indices 0..3."""
    return np.asarray(CLASS_LABELS, np.uint8)[np.asarray(classes)]
