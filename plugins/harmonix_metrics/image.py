"""SSIM and PSNR (scikit-image) of a generated image against the real one, 0..255 scale.

Both work on 2D slices or 3D volumes as given (SSIM: 7-voxel uniform window along every axis,
scikit-image's defaults) with ``data_range=255``, optionally restricted to a ``mask`` (e.g. the
brain):

* PSNR inside a mask is computed from the mean squared error over the mask's voxels; identical
  images give ``inf``.
* SSIM inside a mask is the mean of scikit-image's SSIM map over the mask's voxels, leaving out
  the border that scikit-image also leaves out of its mean ((win_size - 1) // 2 voxels per side);
  without a mask it is exactly scikit-image's mean SSIM.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harmonix.sdk import ImageMetric

DATA_RANGE = 255.0
WIN_SIZE = 7


def _check(prediction, reference, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p, r = np.asarray(prediction, np.float64), np.asarray(reference, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"shapes differ: prediction {p.shape}, reference {r.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != p.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {p.shape}")
        if not mask.any():
            raise ValueError("mask is empty")
    return p, r, mask


def psnr(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB on the 0..255 scale, over ``mask`` if given."""
    p, r, mask = _check(prediction, reference, mask)
    if mask is not None:
        p, r = p[mask], r[mask]
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(r, p, data_range=DATA_RANGE))


def ssim(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM on the 0..255 scale, over ``mask`` (minus the window border) if given."""
    p, r, mask = _check(prediction, reference, mask)
    if mask is None:
        return float(structural_similarity(r, p, data_range=DATA_RANGE, win_size=WIN_SIZE))
    _, ssim_map = structural_similarity(
        r, p, data_range=DATA_RANGE, win_size=WIN_SIZE, full=True
    )
    pad = (WIN_SIZE - 1) // 2
    interior = np.zeros_like(mask)
    interior[tuple(slice(pad, n - pad) for n in mask.shape)] = True
    inside = mask & interior
    if not inside.any():
        raise ValueError(f"mask has no voxels farther than {pad} from the image border")
    return float(ssim_map[inside].mean())


class SSIMMetric(ImageMetric):
    """Structural similarity of a generated image with the real one (higher is better)."""

    name: ClassVar[str] = "ssim"
    higher_is_better: ClassVar[bool] = True

    def compute(
        self, prediction: np.ndarray, reference: np.ndarray, *, mask: np.ndarray | None = None
    ) -> float:
        return ssim(prediction, reference, mask)


class PSNRMetric(ImageMetric):
    """Peak signal-to-noise ratio (dB) of a generated image with the real one."""

    name: ClassVar[str] = "psnr"
    higher_is_better: ClassVar[bool] = True

    def compute(
        self, prediction: np.ndarray, reference: np.ndarray, *, mask: np.ndarray | None = None
    ) -> float:
        return psnr(prediction, reference, mask)
