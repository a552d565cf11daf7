"""The context the stages of one evaluation share (:func:`harmonix.evaluate.run.evaluate`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harmonix.evaluate.cases import SliceBank
from harmonix.evaluate.metrics import MetricSet
from harmonix.evaluate.results import Evaluation
from harmonix.evaluate.strategies import GeneratedFiller
from harmonix.interfaces import Segmenter
from harmonix.registry import Target


@dataclass
class RunContext:
    """What the stages of one evaluation share."""

    ev: Evaluation
    seg: Segmenter
    config: Any  # PreprocessConfig
    strategies: list[str]
    fillers: dict[str, GeneratedFiller]
    target: Target
    seed: int = 0
    metrics: MetricSet = field(default_factory=MetricSet)
    fid_slices: int = 64
    overlays: int = 3
    max_cases: int | None = None
    progress: bool = True
    bank: SliceBank = field(default_factory=SliceBank)

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.ev.sequences

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.ev.timings[name] = time.perf_counter() - start
