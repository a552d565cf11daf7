"""Generated and aligned volumes on the intensity scale of their real counterpart (docs/data.md).

:func:`harmonix.data.preprocess.preprocess_case` maps each present sequence ``x`` (its voxel
values as nibabel reads them, i.e. after the file's ``scl_slope``/``scl_inter``) to the model's
scale ``v = 255 * (clip(x, low, high) - low) / (high - low)``, where ``(low, high)`` are the
sequence's robust percentiles inside the brain (``PreprocessConfig.percentiles``, 0.5 and 99.5
by default), kept in ``GridRecord.intensity``. A volume the model makes (``v`` in 0..255, put
back on the case's grid by ``restore``) is written back with the inverse map::

    x = v * (high - low) / 255 + low    inside the brain mask (restored to the case's grid)
    x = 0                               outside it (the background)

The real counterpart whose ``(low, high)``, dtype and scaling are used is, deterministically:

* an **aligned** sequence: the sequence itself (the real file that was translated);
* a **generated** sequence: its **source** sequence, the real file of the case it was made from
  (the case has no real volume of the generated sequence; a site-wide scale would make one
  case's output depend on the others).

The file is written with the counterpart's on-disk dtype. Integer types: the value stored is
``round((x - inter) / slope)`` (round half to even), clipped to the dtype's range, and the
counterpart's ``scl_slope``/``scl_inter`` are written with it (none when it has none), so nibabel,
FSL or ITK read ``x`` back on the counterpart's scale. Floating types: ``x`` itself, without
scaling. ``--intensity model`` keeps the model's scale: ``float32`` ``v`` in 0..255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scale:
    """The intensity scale of a real file: where the model's 0 and 255 lie, dtype, scaling."""

    sequence: str  # the real sequence whose scale this is
    file: str  # its file name (no folder)
    low: float
    high: float
    dtype: str
    slope: float | None = None  # NIfTI scl_slope/scl_inter; None: no scaling
    inter: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": "input",
            "like_sequence": self.sequence,
            "like_file": self.file,
            "low": self.low,
            "high": self.high,
            "dtype": self.dtype,
            "scl_slope": self.slope,
            "scl_inter": self.inter,
            "mapping": "value * (high - low) / 255 + low inside the brain mask, 0 outside"
                       + self._storage(),
        }

    def _storage(self) -> str:
        if np.dtype(self.dtype).kind not in "iu":
            return ""
        if self.slope is None:
            return f"; rounded to the nearest integer, clipped to the range of {self.dtype}"
        return (f"; stored as round((value - scl_inter) / scl_slope), clipped to the range of "
                f"{self.dtype}")


MODEL_SCALE = {"scale": "model", "range": [0, 255], "dtype": "float32",
               "mapping": "the model's own 0..255 scale (--intensity model)"}


def _scaling(image) -> tuple[float | None, float | None]:
    """The file's (scl_slope, scl_inter) when it scales its data, else (None, None). (nibabel
    moves a loaded file's scaling from the header to the array proxy.)"""
    proxy = image.dataobj
    if hasattr(proxy, "slope") and hasattr(proxy, "inter"):
        slope, inter = proxy.slope, proxy.inter
    else:
        try:
            slope, inter = image.header.get_slope_inter()
        except (AttributeError, TypeError):
            return None, None
    slope = None if slope is None else float(slope)
    inter = None if inter is None else float(inter)
    slope = None if slope is None or not math.isfinite(slope) or slope == 0 else slope
    inter = None if inter is None or not math.isfinite(inter) else inter
    if (slope is None or slope == 1.0) and not inter:
        return None, None
    return slope or 1.0, inter or 0.0


def scale_of(record, sequence: str, image, file_name: str = "") -> Scale:
    """The scale of ``sequence``: its ``(low, high)`` in ``record`` (a ``GridRecord``) and the
    dtype and scaling of its file's header (``image``, a nibabel image)."""
    low, high = record.intensity[sequence]
    dtype = np.dtype(image.header.get_data_dtype())
    if dtype.kind not in "iuf":  # bool, complex, RGB: harmonix writes float32
        dtype = np.dtype(np.float32)
    slope, inter = _scaling(image) if dtype.kind in "iu" else (None, None)
    return Scale(sequence, file_name, float(low), float(high), dtype.name, slope, inter)


def to_scale(volume: np.ndarray, brain: np.ndarray, scale: Scale) -> np.ndarray:
    """The values ``x`` (float64) of a model-scale volume on ``scale``; 0 outside ``brain``."""
    values = np.asarray(volume, np.float64) * ((scale.high - scale.low) / 255.0) + scale.low
    values[~np.asarray(brain, bool)] = 0.0
    return values


def stored(values: np.ndarray, scale: Scale) -> np.ndarray:
    """What the file holds for ``values``: ``scale``'s dtype, rounded, scaled and clipped."""
    dtype = np.dtype(scale.dtype)
    if dtype.kind == "f":
        return values.astype(dtype)
    raw = np.rint((values - (scale.inter or 0.0)) / (scale.slope or 1.0))
    info = np.iinfo(dtype)
    # float64 holds every bound of types up to 32 bits exactly; stay inside 64-bit ones
    high = float(info.max) if dtype.itemsize < 8 else np.nextafter(float(info.max), 0)
    return np.clip(raw, float(info.min), high).astype(dtype)
