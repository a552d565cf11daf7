"""Artifacts a patch-based, slice-wise generator leaves: the checkerboard at the patch period,
and stripes across slices.

:func:`grid_power` is the share of the spectral power of axial slices (inside the brain's
bounding box, mean removed) that falls on the frequencies a pattern repeating every ``period``
pixels occupies: ``(i * H / period, j * W / period)`` for ``i, j`` in ``0..period-1`` but
``(0, 0)``. Natural anatomy puts little power there; a grid puts a lot. The ``grid`` rows of an
evaluation hold it for each generated volume and for the real target of the same case, and
:func:`grid_table` gives per target sequence the ratio generated / real (target: at most 1.5).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KIND = "grid"
THROUGH_PLANE = "through-plane"
THROUGH_PLANE_INTRO = (
    "Energy of the intensity differences between adjacent axial slices inside the brain, over "
    "the variance of the brain's intensities, for generated and real volumes of the same cases "
    "(a slice-wise generator that changes its output from slice to slice leaves stripes in "
    "coronal and sagittal views); `ratio` generated / real, 1 is as smooth as real.")
INTRO = ("Share of the spectral power of axial slices at the frequencies of a grid repeating at "
         "the backbone's patch period (its harmonics included), for generated and real slices "
         "of the same cases; `ratio` generated / real, at most 1.5 is the target.")


def _grid_bins(height: int, width: int, period: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    if height % period or width % period:
        return mask
    mask[::height // period, ::width // period] = True
    mask[0, 0] = False
    return mask


def grid_power(volume: np.ndarray, brain: np.ndarray, period: int,
               min_brain: int = 64) -> float:
    """Mean over the axial slices with at least ``min_brain`` brain voxels of the share of their
    power spectrum at the ``period``-pixel grid's frequencies (0 for ``period`` < 2; NaN when
    no slice qualifies)."""
    if period < 2:
        return 0.0
    volume, brain = np.asarray(volume, np.float64), np.asarray(brain, bool)
    bins = _grid_bins(volume.shape[0], volume.shape[1], period)
    if not bins.any():
        return float("nan")
    shares = []
    for k in range(volume.shape[2]):
        if brain[:, :, k].sum() < min_brain:
            continue
        image = volume[:, :, k] - volume[:, :, k][brain[:, :, k]].mean()
        image[~brain[:, :, k]] = 0.0
        power = np.abs(np.fft.fft2(image)) ** 2
        total = power.sum()
        if total > 0:
            shares.append(power[bins].sum() / total)
    return float(np.mean(shares)) if shares else float("nan")


def through_plane(volume: np.ndarray, brain: np.ndarray) -> float:
    """Mean squared difference between axially adjacent voxels that are both brain, over the
    variance of the brain's voxels (NaN without two adjacent brain slices)."""
    volume, brain = np.asarray(volume, np.float64), np.asarray(brain, bool)
    both = brain[:, :, 1:] & brain[:, :, :-1]
    variance = volume[brain].var() if brain.any() else 0.0
    if not both.any() or variance <= 0:
        return float("nan")
    step = volume[:, :, 1:] - volume[:, :, :-1]
    return float(np.mean(step[both] ** 2) / variance)


def through_plane_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per target sequence: the median over cases and sources of :func:`through_plane` for
    generated and real volumes, and their ratio."""
    return _generated_vs_real(results, THROUGH_PLANE, "through_plane")


def _generated_vs_real(results: pd.DataFrame, kind: str, name: str) -> pd.DataFrame:
    """Per target sequence the median over cases and sources of the ``kind`` rows of generated
    and of real volumes (``NAME_generated``, ``NAME_real``) and their ``ratio``."""
    rows = results[results["kind"] == kind].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["value"] = rows["value"].astype(float)
    medians = rows.groupby(["sequence", "strategy"], sort=False)["value"].median().unstack()
    out = pd.DataFrame({"target": medians.index,
                        f"{name}_generated": medians.get("generated", np.nan).to_numpy(),
                        f"{name}_real": medians.get("real", np.nan).to_numpy()})
    out["ratio"] = out[f"{name}_generated"] / out[f"{name}_real"]
    return out


def grid_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per target sequence: the median over cases and sources of the grid share of generated
    and of real slices, and their ratio (``ratio``; the target is at most 1.5)."""
    out = _generated_vs_real(results, KIND, "grid")
    if not out.empty:
        rows = results[results["kind"] == KIND]
        period = rows.groupby("sequence", sort=False)["metric"].first()
        out["period"] = [str(period.get(t, "")).removeprefix("grid_period_")
                         for t in out["target"]]
    return out


__all__ = ["INTRO", "KIND", "THROUGH_PLANE", "THROUGH_PLANE_INTRO", "grid_power", "grid_table",
           "through_plane", "through_plane_table"]
