"""The official BraTS lesion-wise metrics, computed by the ``brats-evaluation`` package.

The BraTS segmentation challenges since 2023 score each region lesion by lesion: connected
components of the prediction and the truth are matched (panoptica), and the lesion-wise Dice and
HD95 are the means over matched lesions (``sq_dsc``, ``sq_hd95`` of panoptica, what
``brats_evaluation.parse_seg_results`` reports as ``lesionwise_*``), with the package's glioma
configuration (``config_path("gli")``: WT = NETC+SNFH+ET, TC = NETC+ET, ET). harmonix's
canonical labels (NCR 1, ED 2, ET 4) are given to it as BraTS 2023's (1, 2, 3). HD95 is in mm
for an isotropic grid (voxels times the spacing); an infinite one (a lesion with no match) is
the package's 373 mm penalty.

Install with ``pip install 'harmonix[brats]'``. Without it both metrics cannot be built, and
``harmonix evaluate`` runs as before with a note in the report saying how to get them.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from harmonix.sdk import SegmentationMetric, require

Spacing = float | Sequence[float]
REGIONS = {"WT": "wt", "TC": "tc", "ET": "et"}
TO_BRATS2023 = {1: 1, 2: 2, 4: 3}
HD95_PENALTY = 373.0  # mm, the package's (the diagonal of the BraTS grid)


class _Evaluator:
    """One panoptica evaluator (built quietly: panoptica prints a banner), and the scores of
    the last (prediction, truth) pair, so that the two metrics compute it once."""

    _shared: _Evaluator | None = None

    def __init__(self):
        package = require("brats_evaluation", "the official BraTS lesion-wise metrics")
        panoptica = require("panoptica", "the official BraTS lesion-wise metrics")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.evaluator = panoptica.Panoptica_Evaluator.load_from_config(
                str(package.config_path("gli")))
        self._key: tuple | None = None
        self._scores: dict[str, dict[str, float]] = {}

    @classmethod
    def shared(cls) -> _Evaluator:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def scores(self, prediction: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
        prediction, truth = np.asarray(prediction), np.asarray(truth)
        key = (prediction.shape, hash(prediction.tobytes()), hash(truth.tobytes()))
        if key != self._key:
            pred, ref = (_to_brats2023(a) for a in (prediction, truth))
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = self.evaluator.evaluate(pred, ref)
            self._scores = {region: results[group].to_dict(True)
                            for region, group in REGIONS.items()}
            self._key = key
        return self._scores


def _to_brats2023(labels: np.ndarray) -> np.ndarray:
    out = np.zeros(labels.shape, np.uint8)
    for canonical, value in TO_BRATS2023.items():
        out[labels == canonical] = value
    return out


def _scalar(spacing: Spacing) -> float:
    values = [float(spacing)] if np.isscalar(spacing) else [float(s) for s in spacing]
    if max(values) - min(values) > 1e-6:
        raise ValueError(f"lesion-wise HD95 needs an isotropic grid, got spacing {spacing}")
    return values[0]


class _Lesionwise(SegmentationMetric):
    """What both lesion-wise metrics share: one evaluator (built on first use)."""

    def __init__(self):
        self.evaluator = _Evaluator.shared()


class LesionwiseDice(_Lesionwise):
    """BraTS lesion-wise Dice per region (``brats-evaluation``); NaN without lesions in either."""

    name: ClassVar[str] = "lesion_dice"
    higher_is_better: ClassVar[bool] = True

    def compute(self, prediction, truth, *, spacing: Spacing = 1.0) -> dict[str, float]:
        scores = self.evaluator.scores(prediction, truth)
        return {region: float(s["sq_dsc"]) for region, s in scores.items()}


class LesionwiseHD95(_Lesionwise):
    """BraTS lesion-wise HD95 in mm per region (``brats-evaluation``; infinite: 373 mm)."""

    name: ClassVar[str] = "lesion_hd95"
    higher_is_better: ClassVar[bool] = False

    def compute(self, prediction, truth, *, spacing: Spacing = 1.0) -> dict[str, float]:
        scale = _scalar(spacing)
        out = {}
        for region, s in self.evaluator.scores(prediction, truth).items():
            value = float(s["sq_hd95"])
            out[region] = HD95_PENALTY if np.isinf(value) else value * scale
        return out


__all__ = ["LesionwiseDice", "LesionwiseHD95"]
