"""The metric plugins an evaluation runs, by kind (:mod:`harmonix.interfaces`).

:func:`select_metrics` picks every registered metric whose ``by_default`` is true (HD95's is
not: it is slow), or exactly the ones named (``harmonix evaluate --metric NAME``). Each kind is
given what its contract says:

* :class:`~harmonix.interfaces.SegmentationMetric`: every prediction against the case's truth
  (:class:`SegmentationScorer`), rows with ``region`` set;
* :class:`~harmonix.interfaces.ImageMetric`: every generated sequence against the real one inside
  the brain mask (:class:`ImageScorer`), rows with ``sequence`` and ``source`` set;
* :class:`~harmonix.interfaces.ImageSetMetric`: the slice sets of FID's design
  (:mod:`harmonix.evaluation.fid`), rows of kind ``fid``.

Rows name the metric by its registered name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from harmonix.errors import PluginError
from harmonix.interfaces import (
    METRIC_KINDS,
    ImageMetric,
    ImageSetMetric,
    Metric,
    SegmentationMetric,
    Spacing,
)
from harmonix.plugins import get_host


@dataclass
class MetricSet:
    """The metrics one evaluation runs, per kind, by registered name."""

    segmentation: dict[str, SegmentationMetric] = field(default_factory=dict)
    image: dict[str, ImageMetric] = field(default_factory=dict)
    image_set: dict[str, ImageSetMetric] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # metrics left out, and why

    def by_kind(self) -> dict[str, list[str]]:
        """``{"segmentation": [...], "image": [...], "image-set": [...]}`` (for the report)."""
        return {"segmentation": list(self.segmentation), "image": list(self.image),
                "image-set": list(self.image_set)}

    def add(self, name: str, metric: Metric) -> None:
        if isinstance(metric, SegmentationMetric):
            self.segmentation[name] = metric
        elif isinstance(metric, ImageMetric):
            self.image[name] = metric
        elif isinstance(metric, ImageSetMetric):
            self.image_set[name] = metric
        else:
            kinds = ", ".join(k.__name__ for k in METRIC_KINDS.values())
            raise PluginError(f"metric '{name}' ({type(metric).__name__}) is none of {kinds} "
                              "(harmonix.interfaces), so evaluate does not know what to give it")


def select_metrics(names: Sequence[str] | None = None, *, hd95: bool = False) -> MetricSet:
    """The metrics named (each must be registered and usable), else every registered one that
    runs by default; ``hd95`` adds ``hd95``. A metric that was not named but cannot be built
    is left out with a note rather than stopping the evaluation."""
    host = get_host()
    asked = list(dict.fromkeys([*(names or ()), *(["hd95"] if hd95 else [])]))
    candidates = list(dict.fromkeys([*(names or host.components("metric")), *asked]))
    chosen = MetricSet()
    for name in candidates:
        try:
            cls = host.get("metric", name).obj
            if name not in asked and not getattr(cls, "by_default", True):
                continue
            chosen.add(name, cls())
        except Exception as exc:  # noqa: BLE001 - one broken metric plugin must not stop the rest
            if name in asked and isinstance(exc, PluginError):
                raise
            if name in asked:
                raise PluginError(f"metric '{name}' cannot be built: {type(exc).__name__}: "
                                  f"{exc}") from exc
            chosen.notes.append(f"metric '{name}' left out: {type(exc).__name__}: {exc}")
    if not (chosen.segmentation or chosen.image or chosen.image_set):
        raise PluginError("no metric to evaluate with" + (
            f" ({'; '.join(chosen.notes)})" if chosen.notes else ""))
    return chosen


class SegmentationScorer:
    """Every segmentation metric of a prediction against the case's truth:
    ``{(metric, region): value}``; ``regions`` restricts the regions kept (cross-center: WT)."""

    def __init__(self, metrics: Mapping[str, SegmentationMetric], spacing: Spacing,
                 regions: Sequence[str] | None = None):
        self.metrics, self.spacing, self.regions = dict(metrics), spacing, regions

    def __call__(self, prediction: np.ndarray, truth: np.ndarray) -> dict[tuple[str, str], float]:
        scores = {}
        for name, metric in self.metrics.items():
            for region, value in metric.compute(prediction, truth, spacing=self.spacing).items():
                if self.regions is None or region in self.regions:
                    scores[(name, region)] = float(value)
        return scores


class ImageScorer:
    """Every image metric of a filled sequence against the real one, inside the brain mask."""

    def __init__(self, metrics: Mapping[str, ImageMetric]):
        self.metrics = dict(metrics)

    def __call__(self, filled: np.ndarray, real: np.ndarray, mask: np.ndarray) -> dict:
        return {n: float(m.compute(filled, real, mask=mask)) for n, m in self.metrics.items()}


__all__ = ["ImageScorer", "MetricSet", "SegmentationScorer", "select_metrics"]
