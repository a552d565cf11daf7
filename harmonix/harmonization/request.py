"""What one harmonize run asks for: one typed request, built once at the boundary
(``harmonix harmonize`` from its options, :func:`harmonix.harmonize` from its arguments) and
given to :func:`harmonix.harmonization.pipeline.harmonize_site`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonix.data.preprocess import PreprocessConfig
from harmonix.harmonization.options import INTENSITY_MODES, MIN_COVERAGE, OUTPUT_LAYOUTS, POLICIES
from harmonix.harmonization.shards import Shard, shard_of
from harmonix.interfaces import Generator


@dataclass(frozen=True, kw_only=True)
class HarmonizeRequest:
    """Complete every case of the site folder ``site`` for ``target`` and write them to ``out``.

    ``model`` is a run directory, checkpoint or loaded :class:`~harmonix.interfaces.Generator`;
    ``center`` overrides the site's center (its source domains); ``align`` also translates the
    present sequences into the target domain, ``merge_aligned`` (implies ``align``) puts them in
    the case folders and the real copies in ``_original/``; ``sources`` restricts and orders the
    sequences used as sources (default: the registry's ``source_priority``); ``reference`` is a
    site of real target-domain cases whose slices give the target style (default:
    latent-guided); ``preprocess`` overrides the model card's. Cases finished by an earlier run
    with the same settings from the same inputs are skipped unless ``overwrite``. A generated
    volume whose brain the model's crop covers less than ``min_coverage`` fails its case.
    ``intensity``: ``input`` (the real counterpart's scale and dtype) or ``model`` (float32
    0..255); ``layout``: ``target`` (the target's file names) or ``bids``; ``fill`` (``single``
    or ``fused``) overrides the model card's fill policy; ``confidence`` also writes the spread
    across fused sources; ``shard`` (``"K/N"``) does only shard K's cases. ``resample``
    resamples sequences on a grid other than the case's reference sequence onto it (else such a
    case fails); ``run`` (a BIDS ``run-`` label) chooses among runs of one sequence.
    ``progress`` shows a progress bar; ``on_site(site)`` is called once the site is read,
    ``on_case(outcome)`` after each case.
    """

    site: Path
    model: str | Path | Generator
    out: Path
    target: str | None = None
    center: str | None = None
    align: bool = False
    merge_aligned: bool = False
    sources: Sequence[str] | None = None
    reference: Path | None = None
    preprocess: PreprocessConfig | None = None
    device: str = "auto"
    batch_size: int = 16
    seed: int = 0
    overwrite: bool = False
    min_coverage: float = MIN_COVERAGE
    intensity: str = "input"
    layout: str = "target"
    fill: str | None = None
    confidence: bool = False
    shard: Shard | None = None
    resample: bool = False
    run: str | None = None
    progress: bool = False
    on_site: Callable[[Any], None] | None = None
    on_case: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        from harmonix.device import resolve_device  # the CLI's rules and errors (torch: here)

        set_(self, "device", resolve_device(self.device))
        set_(self, "site", Path(self.site))
        set_(self, "out", Path(self.out))
        if self.reference is not None:
            set_(self, "reference", Path(self.reference))
        if self.sources is not None:
            set_(self, "sources", tuple(self.sources))
        set_(self, "shard", shard_of(self.shard))
        set_(self, "align", bool(self.align or self.merge_aligned))
        if not 0 <= self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be between 0 and 1, got {self.min_coverage}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for name, value, allowed in (("intensity", self.intensity, INTENSITY_MODES),
                                     ("layout", self.layout, OUTPUT_LAYOUTS),
                                     ("fill", self.fill, (None, *POLICIES))):
            if value not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ValueError(f"{name} must be one of {shown}, got '{value}'")
