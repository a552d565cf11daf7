"""What one evaluation asks for: one typed request, built once at the boundary (``harmonix
evaluate`` from its options, :func:`harmonix.evaluation` from its arguments) and given to
:func:`harmonix.evaluation.run.run_evaluation`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harmonix.evaluation.scenarios import parse_kinds
from harmonix.evaluation.strategies import STRATEGIES, parse_strategies
from harmonix.harmonization.options import POLICIES
from harmonix.interfaces import Generator, Segmenter

#: ``sources`` value: each missing sequence from the present one most correlated with it
CORRELATED = "correlated"


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest:
    """Evaluate ``segmenter`` on the test site ``data`` across ``scenarios`` and ``strategies``
    and write the report into ``out`` (:mod:`harmonix.evaluation.run` says what is measured).

    ``generator`` (run directory, checkpoint, installed model's name or loaded Generator) is
    needed by the generated strategy, FID, UMAP and cross-center; ``generator_no_lam`` adds its
    FID for the comparison with and without the lesion-aware module. The copy mapping comes from
    ``correlation_data`` (training site folders), else from the models' cards, else the fixed
    clinical mapping. A test case seen in training is an error unless ``allow_overlap``.
    ``fid_slices=0`` skips FID; ``metrics`` names the metric plugins (default: those that run by
    default; ``hd95`` adds HD95). ``sources`` (the present sequences tried as a source, in
    order, or ``"correlated"``), ``reference`` (a site of real target-domain cases whose style
    guides the generator) and ``fill`` (``single`` or ``fused``) choose how the generated
    strategy fills, as ``harmonix harmonize``'s options of those names do. After construction
    ``scenarios`` and ``strategies`` are the parsed lists in canonical order.
    """

    data: Path
    segmenter: str | Path | Segmenter
    out: Path
    generator: str | Path | Generator | None = None
    generator_no_lam: str | Path | Generator | None = None
    scenarios: str | Sequence[str] = "all"
    strategies: str | Sequence[str] = STRATEGIES
    cross_center_data: Path | None = None
    correlation_data: Path | Sequence[Path] | None = None
    target: str | None = None
    seed: int = 0
    device: str = "auto"
    max_cases: int | None = None
    fid_slices: int = 64
    umap: bool = True
    hd95: bool = False
    metrics: Sequence[str] | None = None
    overlays: int = 3
    batch_size: int = 16
    sources: Sequence[str] | str | None = None
    reference: Path | None = None
    fill: str | None = None
    allow_overlap: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        from harmonix.device import resolve_device  # the CLI's rules and errors (torch: here)

        set_(self, "device", resolve_device(self.device))
        set_(self, "data", Path(self.data))
        set_(self, "out", Path(self.out))
        set_(self, "cross_center_data", _path(self.cross_center_data))
        set_(self, "reference", _path(self.reference))
        if isinstance(self.correlation_data, (str, Path)):
            set_(self, "correlation_data", Path(self.correlation_data))
        elif self.correlation_data is not None:
            set_(self, "correlation_data", tuple(Path(p) for p in self.correlation_data))
        set_(self, "scenarios", tuple(parse_kinds(self.scenarios)))
        set_(self, "strategies", tuple(parse_strategies(self.strategies)))
        if isinstance(self.sources, str) and self.sources != CORRELATED:
            raise ValueError(f"sources: a list of sequences or '{CORRELATED}', "
                             f"not {self.sources!r}")
        if self.sources is not None and not isinstance(self.sources, str):
            set_(self, "sources", tuple(self.sources))
        if self.fill not in (None, *POLICIES):
            raise ValueError(f"fill must be one of {', '.join(POLICIES)}, got '{self.fill}'")
        for name in ("fid_slices", "overlays"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    @property
    def correlated(self) -> bool:
        """Each missing sequence from the present one most correlated with it."""
        return self.sources == CORRELATED
