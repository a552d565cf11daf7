"""The context the stages of one evaluation share
(:func:`harmonix.evaluation.run.run_evaluation`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from harmonix.data.preprocess import PreprocessConfig
from harmonix.evaluation.cases import SliceBank
from harmonix.evaluation.metrics import MetricSet
from harmonix.evaluation.request import EvaluateRequest
from harmonix.evaluation.results import Evaluation
from harmonix.evaluation.strategies import GeneratedFiller
from harmonix.interfaces import Segmenter
from harmonix.registry import Target


@dataclass(kw_only=True)
class RunContext:
    """What the stages of one evaluation share: the request and what was resolved from it."""

    request: EvaluateRequest
    ev: Evaluation
    seg: Segmenter
    config: PreprocessConfig  # the segmenter's preprocessing
    strategies: list[str]
    target: Target
    metrics: MetricSet = field(default_factory=MetricSet)
    fillers: dict[str, GeneratedFiller] = field(default_factory=dict)
    bank: SliceBank = field(default_factory=SliceBank)

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def fid_slices(self) -> int:
        return self.request.fid_slices

    @property
    def overlays(self) -> int:
        return self.request.overlays

    @property
    def max_cases(self) -> int | None:
        return self.request.max_cases

    @property
    def progress(self) -> bool:
        return self.request.progress

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.ev.sequences

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.ev.timings[name] = time.perf_counter() - start
