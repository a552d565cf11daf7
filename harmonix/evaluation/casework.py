"""The scenarios case by case: every strategy of every scenario on one test case, then every
(source, target) pair of every generator, keeping slices for FID and the sequence codes.

A filled case starts from the case preprocessed from its present sequences only
(:class:`~harmonix.evaluation.cases.CaseVariants`); scores against the real sequences and the
kept predictions are moved onto the full preparation's grid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harmonix.evaluation.artifacts import KIND as GRID
from harmonix.evaluation.artifacts import THROUGH_PLANE, grid_power, through_plane
from harmonix.evaluation.brasyn import KIND as BRASYN
from harmonix.evaluation.brasyn import image_rows as brasyn_image_rows
from harmonix.evaluation.cases import (
    CaseVariants,
    axial,
    fid_slice_indices,
    grid_offset,
    lesion_crops,
    lesion_slice_indices,
    shift,
)
from harmonix.evaluation.context import RunContext
from harmonix.evaluation.fidelity import add_pair_rows
from harmonix.evaluation.lesion import KIND as LESION
from harmonix.evaluation.lesion import pair_rows, tissue_on_grid, truth_path
from harmonix.evaluation.metrics import ImageScorer, SegmentationScorer
from harmonix.evaluation.planes import plane_panels
from harmonix.evaluation.report_header import BUILTIN_KEY, builtin_synthetic
from harmonix.evaluation.results import MAIN, Evaluation
from harmonix.evaluation.scenarios import Scenario, missing_text
from harmonix.evaluation.strategies import GeneratedFiller, copy_fill, copy_sources
from harmonix.interfaces import Segmenter
from harmonix.progress import progress_task
from harmonix.segmentation import PreparedSite


class _CaseWork:
    """One case's predictions, region scores and image scores, each computed once; predictions
    are kept on the full preparation's grid (for the overlays)."""

    def __init__(self, variants: CaseVariants, seg: Segmenter, scorer: SegmentationScorer,
                 images: ImageScorer):
        self.variants, self.seg, self.scorer, self.images = variants, seg, scorer, images
        self.predictions: dict[tuple[str, frozenset], np.ndarray] = {}
        self.scores: dict[tuple[str, frozenset], dict] = {}
        self.image_scores: dict[tuple, dict] = {}
        self.tissue: np.ndarray | None = None  # tissue map on the full grid (built-in data)

    @property
    def full(self):
        return self.variants.full

    def segment(self, strategy: str, missing: frozenset, volumes, prepared) -> dict:
        key = (strategy, missing)
        if key not in self.scores:
            labels = self.seg.predict(volumes)
            self.scores[key] = self.scorer(labels, prepared.label)
            on_full = self.variants.to_full(labels, prepared)
            if on_full is not None:
                self.predictions[key] = on_full
        return self.scores[key]

    def image_quality(self, label: str, sequence: str, source: str, volume, prepared) -> dict:
        key = (label, sequence, source, id(volume), id(prepared.brain_mask))
        if key not in self.image_scores:
            real = self.variants.from_full(self.full.volumes[sequence], prepared)
            self.image_scores[key] = ({n: float("nan") for n in self.images.metrics}
                                      if real is None else
                                      self.images(volume, real, prepared.brain_mask))
        return self.image_scores[key]


def run_cases(run: RunContext, test: PreparedSite) -> None:
    ev = run.ev
    scorer = SegmentationScorer(run.metrics.segmentation, run.config.spacing)
    images = ImageScorer(run.metrics.image)
    n = len(test.cases)
    per_case = math.ceil(run.fid_slices / (n // 2)) if n > 1 else 2 * run.fid_slices
    site_cases = {c.id: c for c in test.site.cases}
    ev.settings[BUILTIN_KEY] = builtin_synthetic(test.site.root)  # the report's banner
    with progress_task("scenarios", total=n * len(ev.scenarios),
                       quiet=not run.progress) as advance:
        for index, case in enumerate(test.cases):
            variants = CaseVariants(site_cases[case.case_id], case, run.config, run.sequences)
            work = _CaseWork(variants, run.seg, scorer, images)
            truth = truth_path(test.site.root, case.case_id)
            if truth is not None:
                work.tissue = tissue_on_grid(truth, case.record)
            for scenario in ev.scenarios:
                advance(0, case=case.case_id, scenario=scenario.name)
                _scenario_case(run, work, scenario)
                advance(1)
            _pairs_and_slices(run, work, index, n, per_case)
            if index < run.overlays:
                ev.overlays.append(_overlay(work, ev, run.fillers.get(MAIN)))
            if index == 0 and MAIN in run.fillers:  # the report's through-plane figure
                ev.planes = _planes(work, ev, run.fillers[MAIN])
            for filler in run.fillers.values():
                filler.forget(case.case_id)


def _scenario_case(run: RunContext, work: _CaseWork, scenario: Scenario) -> None:
    """Every strategy of one scenario on one case; the filled ones start from the case
    preprocessed from its present sequences only."""
    ev, case = run.ev, work.full
    assigned = ev.brasyn_assignment if scenario.kind == BRASYN else ev.random_assignment
    missing = scenario.missing or assigned[case.case_id]
    present = [s for s in run.sequences if s not in missing]
    base = dict(case=case.case_id, scenario=scenario.name, kind=scenario.kind,
                missing=missing_text(missing, run.sequences))
    if "complete" in run.strategies:
        for (metric, region), value in work.segment("complete", frozenset(), case.volumes,
                                                    case).items():
            ev.add(**base, strategy="complete", metric=metric, region=region, value=value)
    prepared = work.variants.present(present)
    filled = []  # (strategy, generator label, {missing: source}, volumes)
    if "copy" in run.strategies:
        sources = copy_sources(ev.correlations, sorted(missing), present)
        filled.append(("copy", "", sources, copy_fill(prepared.volumes, sources)))
    if "generated" in run.strategies:
        volumes, sources = run.fillers[MAIN].fill(prepared, present)
        filled.append(("generated", MAIN, sources, volumes))
    for strategy, label, sources, volumes in filled:
        fills = ";".join(f"{m}<-{sources[m]}" for m in run.sequences if m in sources)
        for (metric, region), value in work.segment(strategy, missing, volumes,
                                                    prepared).items():
            ev.add(**base, strategy=strategy, generator=label, metric=metric, region=region,
                   source=fills, value=value)
        if scenario.kind == BRASYN and strategy == "generated":
            _brasyn_rows(run, work, base, prepared, sources, volumes, present)
        for m, src in sources.items():
            quality = work.image_quality(strategy, m, src, volumes[m], prepared)
            for metric, value in quality.items():
                ev.add(**base, strategy=strategy, generator=label, metric=metric, sequence=m,
                       source=src, value=value)


def _brasyn_rows(run: RunContext, work: _CaseWork, base: dict, prepared, sources, volumes,
                 present: list[str]) -> None:
    """BraSyn's image scores of the dropped sequence (:mod:`~harmonix.evaluation.brasyn`):
    generated, copied (the copy strategy's source) and remapped against the real one, on the
    present-only grid."""
    if run.ev.correlations is None:
        raise ValueError("the BraSyn protocol needs the copy mapping (correlation data)")
    copied = copy_fill(prepared.volumes, copy_sources(run.ev.correlations, sources, present))
    for m, src in sources.items():
        real = work.variants.from_full(work.full.volumes[m], prepared)
        if real is None or prepared.label is None:
            continue
        for row in brasyn_image_rows(volumes[m], copied[m], real, prepared.label,
                                     prepared.brain_mask):
            run.ev.add(**base, generator=MAIN if row["strategy"] == "generated" else "",
                       sequence=m, source=src, **row)


def _slices_on_full(filler: GeneratedFiller, variants: CaseVariants, prepared, target: str,
                    source: str, ks: np.ndarray) -> np.ndarray | None:
    """Axial slices ``ks`` (full grid) of ``target`` generated from ``source`` of
    ``prepared`` (only those slices), on the full grid."""
    full = variants.full
    offset = grid_offset(full.record.affine, prepared.record.affine)
    if offset is None:
        return None
    depth = prepared.brain_mask.shape[-1]
    ks_there = np.asarray(ks) + offset[2]
    inside = (ks_there >= 0) & (ks_there < depth)
    out = np.zeros((len(ks), *full.brain_mask.shape[:2]), np.float32)
    if inside.any():
        made = filler.slices(prepared, target, source, ks_there[inside])  # (k, X, Y)
        moved = shift(np.moveaxis(made, 0, -1), (-offset[0], -offset[1]),
                      full.brain_mask.shape[:2])
        out[inside] = np.moveaxis(moved, -1, 0)
    return out


def _sampled_slices(bank, filler: GeneratedFiller, work: _CaseWork, prepared, label: str,
                    source: str, target: str, ks_a: np.ndarray, lesion_ks: np.ndarray,
                    masks) -> None:
    """Only the slices FID needs of ``target`` made from ``source`` by generator ``label``: half
    A's sampled slices and the lesion crops."""
    made = _slices_on_full(filler, work.variants, prepared, target, source,
                           np.concatenate([ks_a, lesion_ks]).astype(int))
    if made is None:
        return
    if len(ks_a):
        bank.add_generated(label, source, target, made[:len(ks_a)])
    if len(lesion_ks):
        bank.add_crops(target, lesion_crops(made[len(ks_a):], masks), label, source)


def _pairs_and_slices(run: RunContext, work: _CaseWork, index: int, n: int, per_case: int) -> None:
    """Every (source, target) pair of every generator, from the case preprocessed with the
    source alone: SSIM/PSNR rows; slices for FID and the (lesion) codes."""
    ev, bank, case = run.ev, run.bank, work.full
    rng = np.random.default_rng([run.seed, index])
    ks = (fid_slice_indices(case.brain_mask, per_case, rng) if run.fid_slices > 0
          else np.array([], int))
    halves = {"A" if index % 2 == 0 else "B": ks} if n > 1 else {"A": ks[0::2], "B": ks[1::2]}
    for half, half_ks in halves.items():
        for seq in run.sequences:
            bank.add_real(half, seq, axial(case.volumes[seq], half_ks))
    lesion = case.label > 0 if case.label is not None else None
    lesion_ks = lesion_slice_indices(case.label, per_case if run.fid_slices > 0 else 0)
    masks = axial(lesion, lesion_ks) > 0 if len(lesion_ks) else None
    for t in run.sequences if len(lesion_ks) else ():
        bank.add_lesion(t, None, axial(case.volumes[t] * lesion, lesion_ks))
        bank.add_crops(t, lesion_crops(axial(case.volumes[t], lesion_ks), masks))
    for label, filler in run.fillers.items():
        for target in run.sequences:
            for source in [s for s in run.sequences if s != target]:
                prepared = work.variants.present([source])
                if label != MAIN:  # FID only: just the sampled and the lesion slices
                    _sampled_slices(bank, filler, work, prepared, label, source, target,
                                    halves.get("A", np.array([], int)), lesion_ks, masks)
                    continue
                volume = filler.volume(prepared, target, source)  # the scenarios reuse it
                for metric, value in work.image_quality("generated", target, source, volume,
                                                        prepared).items():
                    ev.add(case=case.case_id, scenario="pairs", kind="pairs",
                           strategy="generated", generator=label, metric=metric,
                           sequence=target, source=source, value=value)
                # issue 14: generated vs the source copied and remapped, against the real target
                real = work.variants.from_full(case.volumes[target], prepared)
                add_pair_rows(ev, case.case_id, source, target, volume, prepared.volumes[source],
                              real, prepared.brain_mask)
                _lesion_and_grid_rows(run, work, prepared, source, target, volume, real)
                on_full = work.variants.to_full(volume, prepared)
                if on_full is None:
                    continue
                if "A" in halves:
                    bank.add_generated(label, source, target, axial(on_full, halves["A"]))
                if len(lesion_ks):
                    bank.add_lesion(target, source, axial(on_full * lesion, lesion_ks))
                    bank.add_crops(target, lesion_crops(axial(on_full, lesion_ks), masks), label,
                                   source)


def _lesion_and_grid_rows(run: RunContext, work: _CaseWork, prepared, source: str, target: str,
                          volume: np.ndarray, real: np.ndarray | None) -> None:
    """Lesion preservation (:mod:`~harmonix.evaluation.lesion`) and the grid share
    (:mod:`~harmonix.evaluation.artifacts`) of one generated volume, against the real target."""
    if real is None:
        return
    case_id = work.full.case_id
    base = dict(case=case_id, sequence=target, source=source)
    if prepared.label is not None:
        tissue = (None if work.tissue is None
                  else work.variants.from_full(work.tissue, prepared))
        for row in pair_rows(volume, prepared.volumes[source], real, prepared.label,
                             prepared.brain_mask, tissue):
            run.ev.add(**base, scenario=LESION, kind=LESION, **row)
    period = int(getattr(run.fillers[MAIN].generator, "patch_period", 1))
    for strategy, image in (("generated", volume), ("real", real)):
        run.ev.add(**base, scenario=GRID, kind=GRID, strategy=strategy,
                   metric=f"grid_period_{period}",
                   value=grid_power(image, prepared.brain_mask, period))
        run.ev.add(**base, scenario=THROUGH_PLANE, kind=THROUGH_PLANE, strategy=strategy,
                   metric="through_plane", value=through_plane(image, prepared.brain_mask))


def _generated_on_full(work: _CaseWork, ev: Evaluation, filler: GeneratedFiller
                       ) -> dict[str, tuple[str, np.ndarray]]:
    """Each sequence generated from harmonize's sources for it (the volumes of the pairs,
    cached), on the full grid: ``{target: (sources joined by +, volume)}``."""
    generated = {}
    for target in ev.sequences:
        sources = filler.plan([s for s in ev.sequences if s != target])[target]
        prepared = work.variants.present(sources)
        on_full = work.variants.to_full(filler.made(prepared, target, sources), prepared)
        if on_full is not None:
            generated[target] = ("+".join(sources), on_full)
    return generated


def _planes(work: _CaseWork, ev: Evaluation, filler: GeneratedFiller) -> dict[str, Any]:
    """Coronal and sagittal slices of each generated target and the real one
    (:func:`~harmonix.evaluation.planes.plane_panels`; only those slices are kept)."""
    case = work.full
    return plane_panels(case.case_id, case.brain_mask, case.volumes,
                        _generated_on_full(work, ev, filler))


def _overlay(work: _CaseWork, ev: Evaluation, filler: GeneratedFiller | None = None
             ) -> dict[str, Any]:
    """The axial slice with the most tumour, the truth and every prediction on it; the real
    slice of every sequence and, with ``filler``, each generated from harmonize's source (the
    volumes of the pairs, cached) for the report's examples figure."""
    case = work.full
    area = (case.label > 0).reshape(-1, case.label.shape[-1]).sum(axis=0)
    k = int(area.argmax())
    background = ev.sequences[-1]  # flair for the four BraTS sequences
    by_missing = {}
    for (strategy, missing), labels in work.predictions.items():
        by_missing.setdefault(missing, {})[strategy] = labels[:, :, k]
    generated = {t: (sources, volume[:, :, k]) for t, (sources, volume) in
                 (_generated_on_full(work, ev, filler) if filler is not None else {}).items()}
    return {"case": case.case_id, "slice": k, "background": case.volumes[background][:, :, k],
            "background_sequence": background, "truth": case.label[:, :, k],
            "predictions": by_missing, "generated": generated,
            "real": {s: case.volumes[s][:, :, k] for s in ev.sequences}}
