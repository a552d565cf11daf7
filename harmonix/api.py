"""The Python API: ``harmonix.harmonize``, ``harmonix.fill_case``, ``harmonix.load_generator``
and ``harmonix.evaluation`` with their real signatures. Each builds the typed request of its
boundary (:class:`~harmonix.harmonization.request.HarmonizeRequest`,
:class:`~harmonix.evaluation.request.EvaluateRequest`) and runs it, as the CLI does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harmonix.data.preprocess import PreprocessConfig
from harmonix.evaluation.request import EvaluateRequest
from harmonix.evaluation.results import EvaluationResult
from harmonix.evaluation.run import run_evaluation
from harmonix.evaluation.strategies import STRATEGIES
from harmonix.harmonization.fill import fill_case
from harmonix.harmonization.options import MIN_COVERAGE
from harmonix.harmonization.pipeline import HarmonizeResult, harmonize_site
from harmonix.harmonization.request import HarmonizeRequest
from harmonix.harmonization.shards import Shard
from harmonix.interfaces import Generator, Segmenter
from harmonix.models.checkpoints import load_generator

__all__ = ["evaluate", "fill_case", "harmonize", "load_generator"]


def harmonize(
    site: str | Path,
    *,
    model: str | Path | Generator,
    out: str | Path,
    target: str | None = None,
    center: str | None = None,
    align: bool = False,
    merge_aligned: bool = False,
    sources: Sequence[str] | None = None,
    reference: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
    device: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    overwrite: bool = False,
    min_coverage: float = MIN_COVERAGE,
    intensity: str = "input",
    layout: str = "target",
    fill: str | None = None,
    confidence: bool = False,
    shard: Shard | str | None = None,
    resample: bool = False,
    run: str | None = None,
    progress: bool = False,
    on_site: Callable[[Any], None] | None = None,
    on_case: Callable[[Any], None] | None = None,
) -> HarmonizeResult:
    """Complete every case of the site folder ``site`` for ``target`` (default: the registry's)
    and write them to ``out``, as ``harmonix harmonize`` does; every argument is the
    :class:`~harmonix.harmonization.request.HarmonizeRequest` field of that name.

    ``model`` is a run directory, checkpoint or loaded :class:`~harmonix.interfaces.Generator`.
    Returns the outcome of every case and the manifest written.
    """
    return harmonize_site(HarmonizeRequest(
        site=site, model=model, out=out, target=target, center=center, align=align,
        merge_aligned=merge_aligned, sources=sources, reference=reference,
        preprocess=preprocess, device=device, batch_size=batch_size, seed=seed,
        overwrite=overwrite, min_coverage=min_coverage, intensity=intensity, layout=layout,
        fill=fill, confidence=confidence, shard=shard, resample=resample, run=run,
        progress=progress, on_site=on_site, on_case=on_case,
    ))


def evaluate(
    data: str | Path,
    *,
    segmenter: str | Path | Segmenter,
    out: str | Path,
    generator: str | Path | Generator | None = None,
    generator_no_lam: str | Path | Generator | None = None,
    scenarios: str | Sequence[str] = "all",
    strategies: str | Sequence[str] = STRATEGIES,
    cross_center_data: str | Path | None = None,
    correlation_data: str | Path | Sequence[str | Path] | None = None,
    target: str | None = None,
    seed: int = 0,
    device: str = "auto",
    max_cases: int | None = None,
    fid_slices: int = 64,
    umap: bool = True,
    hd95: bool = False,
    metrics: Sequence[str] | None = None,
    overlays: int = 3,
    batch_size: int = 16,
    sources: Sequence[str] | str | None = None,
    reference: str | Path | None = None,
    fill: str | None = None,
    allow_overlap: bool = False,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``segmenter`` on the test site ``data`` with sequences missing, copied and
    generated, and write the report into ``out``, as ``harmonix evaluate`` does; every argument
    is the :class:`~harmonix.evaluation.request.EvaluateRequest` field of that name.

    Returns the results table, the statistics and the files written.
    """
    return run_evaluation(EvaluateRequest(
        data=data, segmenter=segmenter, out=out, generator=generator,
        generator_no_lam=generator_no_lam, scenarios=scenarios, strategies=strategies,
        cross_center_data=cross_center_data, correlation_data=correlation_data, target=target,
        seed=seed, device=device, max_cases=max_cases, fid_slices=fid_slices, umap=umap,
        hd95=hd95, metrics=metrics, overlays=overlays, batch_size=batch_size, sources=sources,
        reference=reference, fill=fill, allow_overlap=allow_overlap, progress=progress,
    ))
