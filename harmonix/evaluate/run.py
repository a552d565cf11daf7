"""The paper's evaluation: a segmenter that needs every sequence, on cases with some missing.

:func:`evaluate` runs, for the complete labelled cases of a test site (preprocessed once, with
the segmenter's own ``PreprocessConfig``):

* scenarios (:mod:`~harmonix.evaluate.scenarios`): the 14 fixed missing sets, random missing
  per case, and cross-center;
* strategies (:mod:`~harmonix.evaluate.strategies`): complete, copy, generated;
* per case, scenario and strategy: Dice (and HD95) per region WT/TC/ET; per filled sequence:
  SSIM and PSNR inside the brain mask against the real one;
* per (source, target) sequence pair: FID of generated slices against real ones, next to a
  real-versus-real baseline, for the generator and (if given) the one trained without LAM
  (which generates only the slices FID samples);
* the generator's sequence codes of real and generated slices (UMAP);
* statistics (:mod:`~harmonix.evaluate.stats`) and the report (:mod:`~harmonix.evaluate.report`).

Work is shared wherever the result is the same: the complete prediction of a case serves every
scenario, a prediction is made once per (case, strategy, missing set) so random missing reuses
the fixed scenarios', and each (case, sequence, source) is generated once (all axial slices of
the brain in batches). Cases are processed one at a time; only slices for FID/UMAP and a few
overlay slices are kept.

**FID design.** The cases are split in two halves A and B (alternating, in case order; one case:
alternating slices). Per target sequence ``t`` the baseline is FID(real ``t`` of A, real ``t`` of
B); a pair ``s -> t`` is FID(``t`` generated from ``s`` of A, real ``t`` of B), and the copy
strategy's FID(real ``s`` of A, real ``t`` of B). Every comparison thus has the same sample sizes
and reference set, and FID's small-sample bias is the baseline's. At most ``fid_slices`` slices
per set, sampled among the slices with at least a quarter of the case's largest brain area.

**Cross-center.** Each labelled case of a local site (``cross_center_data``) is given to the
segmenter with only its T2 (read as the local center's domain): ``copy`` puts the local T2 in
all four inputs; ``generated`` makes T1, T1ce and FLAIR from it and also translates the T2 itself
into the target domain (``harmonix harmonize --align``); ``generated-noalign`` makes the three
but keeps the local T2 as acquired. Only the whole tumour (WT) is scored: the local labels
come from another protocol and the sub-regions depend on contrast that T2 alone does not carry.
FID of the local T2 against the target's real T2 is reported before and after alignment.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonix.evaluate.scenarios import (
    Scenario,
    fixed_scenarios,
    missing_text,
    parse_kinds,
    random_missing,
)
from harmonix.evaluate.segmentation import (
    PreparedSite,
    load_segmenter,
    prepare_site,
    segmenter_preprocess,
)
from harmonix.evaluate.strategies import (
    STRATEGIES,
    GeneratedFiller,
    copy_fill,
    copy_sources,
    parse_strategies,
    sequence_correlations,
)
from harmonix.interfaces import Generator, Segmenter
from harmonix.progress import progress_task
from harmonix.registry import Target, load_registry

COLUMNS = ("case", "scenario", "kind", "missing", "strategy", "generator", "metric", "region",
           "sequence", "source", "value")
MAIN, NO_LAM = "lam", "no-lam"  # generator labels: --generator and --generator-no-lam
GENERATOR_LABELS = {MAIN: "generator (with LAM)", NO_LAM: "generator without LAM"}
CROSS = "cross-center"
MAX_CORRELATION_CASES = 20


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured and wrote."""

    out: Path
    results: pd.DataFrame  # long table, the content of results.csv
    statistics: dict[str, pd.DataFrame]
    report: Path
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """Everything measured, handed to :mod:`harmonix.evaluate.report`."""

    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    correlations: pd.DataFrame | None = None
    correlation_source: str = ""
    random_assignment: dict[str, frozenset[str]] = field(default_factory=dict)
    sequences: tuple[str, ...] = ()
    scenarios: list[Scenario] = field(default_factory=list)
    codes: pd.DataFrame | None = None  # UMAP: target, kind, source, x, y
    overlays: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append({c: row.get(c, "") for c in COLUMNS})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(COLUMNS))


def _fills_text(sources: dict[str, str], sequences: Sequence[str]) -> str:
    return ";".join(f"{m}<-{sources[m]}" for m in sequences if m in sources)


def _load_generator(model, device: str) -> Generator | None:
    if model is None or isinstance(model, Generator):
        return model
    from harmonix import load_generator

    return load_generator(model, device=device)


def _check_grid(generator: Generator, config, what: str) -> None:
    size = int(generator.image_size)
    if tuple(config.crop_shape[:2]) != (size, size):
        raise ValueError(
            f"{what} makes {size}x{size} slices but the segmenter was trained on a "
            f"{config.crop_shape[0]}x{config.crop_shape[1]} crop; train the segmenter with "
            "'harmonix segment train --preprocess-like GENERATOR'"
        )


def _resolve_target(target: str | None, center: str) -> Target:
    registry = load_registry()
    if target is None:
        target = center if center in registry.targets else registry.defaults.get("target")
    return registry.target(target)


class _SegmentationScorer:
    """Dice (and HD95) per region of a prediction against the case's truth."""

    def __init__(self, hd95: bool, spacing: float):
        from harmonix.plugins import get_metric

        self.dice = get_metric("dice")
        self.hd95 = get_metric("hd95") if hd95 else None
        self.spacing = spacing

    def __call__(self, prediction: np.ndarray, truth: np.ndarray) -> dict[tuple[str, str], float]:
        scores = {("dice", r): v for r, v in self.dice.compute(prediction, truth).items()}
        if self.hd95 is not None:
            hd = self.hd95.compute(prediction, truth, spacing=self.spacing)
            scores.update({("hd95", r): v for r, v in hd.items()})
        return scores


class _ImageScorer:
    """SSIM and PSNR of a filled sequence against the real one, inside the brain mask."""

    def __init__(self):
        from harmonix.plugins import get_metric

        self.metrics = {name: get_metric(name) for name in ("ssim", "psnr")}

    def __call__(self, filled: np.ndarray, real: np.ndarray, mask: np.ndarray) -> dict:
        return {n: float(m.compute(filled, real, mask=mask)) for n, m in self.metrics.items()}


def _fid_slices(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` axial slice indices with at least a quarter of the largest brain area."""
    area = mask.reshape(-1, mask.shape[-1]).sum(axis=0)
    candidates = np.flatnonzero(area >= 0.25 * area.max()) if area.max() else np.array([], int)
    return np.sort(rng.choice(candidates, min(n, len(candidates)), replace=False))


class _SliceBank:
    """Slices kept for FID and UMAP: real ones per sequence and half, generated ones per
    (generator, source, target) from half A."""

    def __init__(self):
        self.real: dict[tuple[str, str], list[np.ndarray]] = {}
        self.generated: dict[tuple[str, str, str], list[np.ndarray]] = {}
        self.cross: tuple[str, np.ndarray, np.ndarray] | None = None  # center, local, aligned

    def add_real(self, half: str, sequence: str, slices: np.ndarray) -> None:
        self.real.setdefault((half, sequence), []).append(slices)

    def add_generated(self, label: str, source: str, target: str, slices: np.ndarray) -> None:
        self.generated.setdefault((label, source, target), []).append(slices)

    @staticmethod
    def stack(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, 1, 1), np.float32)


def _axial(volume: np.ndarray, ks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(volume[:, :, ks], -1, 0)).astype(np.float32)


def evaluate(
    data: str | Path,
    *,
    segmenter: str | Path | Segmenter,
    out: str | Path,
    generator: str | Path | Generator | None = None,
    scenarios: str | Sequence[str] = "all",
    strategies: str | Sequence[str] = STRATEGIES,
    generator_no_lam: str | Path | Generator | None = None,
    cross_center_data: str | Path | None = None,
    correlation_data: str | Path | Sequence[str | Path] | None = None,
    target: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    max_cases: int | None = None,
    fid_slices: int = 64,
    umap: bool = True,
    hd95: bool = False,
    overlays: int = 3,
    batch_size: int = 16,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``segmenter`` on the test site ``data`` across scenarios and strategies and
    write the report into ``out`` (see the module docstring for what is measured).

    ``generator`` (run directory, checkpoint or loaded Generator) is needed by the generated
    strategy, FID, UMAP and cross-center; ``generator_no_lam`` adds its FID (on the sampled
    slices only) for the comparison with and without the lesion-aware module. Copy
    correlations are measured on ``correlation_data`` (site folders), else on the segmenter's
    training sites (recorded in its card), else on the test site; the report says which.
    ``fid_slices=0`` skips FID.
    """
    from harmonix.evaluate.report import write_report

    began = time.perf_counter()
    out = Path(out)
    kinds = parse_kinds(scenarios)
    strategies = parse_strategies(strategies)
    seg = load_segmenter(segmenter, device)
    sequences = tuple(seg.sequences)
    config = segmenter_preprocess(seg)
    gen = _load_generator(generator, device)
    gen_no_lam = _load_generator(generator_no_lam, device)
    if gen is None and ("generated" in strategies or (CROSS in kinds and cross_center_data)):
        raise ValueError("the generated strategy and cross-center need a generator (--generator)")

    timings: dict[str, float] = {}
    with progress_task("prepare test cases", total=None, quiet=not progress) as advance:
        test = prepare_site(data, config, sequences=sequences, max_cases=max_cases,
                            on_case=lambda case_id: advance(1, case=case_id))
    timings["prepare"] = time.perf_counter() - began
    target_spec = _resolve_target(target, test.site.center)
    fillers: dict[str, GeneratedFiller] = {}
    notes = []
    for label, model in ((MAIN, gen), (NO_LAM, gen_no_lam)):
        if model is not None:
            option = "--generator" if label == MAIN else "--generator-no-lam"
            _check_grid(model, config, option)
            lam = ((model.card or {}).get("recipe") or {}).get("lam")
            if lam is not None and bool(lam) != (label == MAIN):
                notes.append(f"{option}'s model card says lam={lam}; the report labels it "
                             f"'{GENERATOR_LABELS[label]}' by the option it was given with")
            fillers[label] = GeneratedFiller(model, target_spec, sequences,
                                             center=test.site.center, batch_size=batch_size,
                                             seed=seed)
            fillers[label].check()

    ev = Evaluation(rows=[], settings={}, sequences=sequences, skipped=test.skipped,
                    timings=timings, notes=notes)
    ev.settings = _settings(data, segmenter, generator, generator_no_lam, cross_center_data,
                            kinds, strategies, seed, config, target_spec, seg, test, fid_slices)
    if "copy" in strategies:
        start = time.perf_counter()
        ev.correlations, ev.correlation_source = _correlations(correlation_data, seg, test,
                                                               config, sequences)
        for a in sequences:
            for b in sequences:
                ev.add(scenario="correlation", kind="correlation", metric="pearson_r",
                       sequence=a, source=b, value=float(ev.correlations.loc[a, b]))
        timings["correlations"] = time.perf_counter() - start

    ev.scenarios = fixed_scenarios(sequences, [k for k in kinds if k in ("single", "double",
                                                                         "triple")])
    if "random" in kinds:
        ev.random_assignment = random_missing([c.case_id for c in test.cases], sequences,
                                              seed=seed)
        ev.scenarios.append(Scenario("random", "random"))

    start = time.perf_counter()
    bank = _SliceBank()
    _run_cases(ev, test, seg, strategies, fillers, bank, config, seed=seed, hd95=hd95,
               fid_slices=fid_slices, overlays=overlays, progress=progress)
    timings["scenarios"] = time.perf_counter() - start

    if CROSS in kinds:
        start = time.perf_counter()
        if cross_center_data is None:
            ev.notes.append("cross-center skipped: no --cross-center-data site given")
        else:
            _cross_center(ev, cross_center_data, seg, fillers[MAIN], target_spec, config, bank,
                          fid_slices=fid_slices, seed=seed, max_cases=max_cases,
                          progress=progress)
            ev.scenarios.append(Scenario(CROSS, CROSS))
        timings["cross-center"] = time.perf_counter() - start

    if fid_slices > 0 and fillers:
        start = time.perf_counter()
        _fid(ev, bank, sequences, list(fillers), fid_slices=fid_slices, seed=seed,
             progress=progress)
        timings["fid"] = time.perf_counter() - start
    elif fid_slices <= 0:
        ev.notes.append("FID skipped (fid_slices=0)")
    if gen is not None:
        start = time.perf_counter()
        _codes(ev, gen, bank, target_spec, sequences, seed=seed, umap=umap)
        timings["codes"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - began
    return write_report(ev, out)


# -- settings and correlations ---------------------------------------------------------------------
def _describe(model) -> str:
    if model is None:
        return ""
    if isinstance(model, (str, Path)):
        return str(Path(model).resolve())
    return f"<{type(model).__name__}>"


def _settings(data, segmenter, generator, generator_no_lam, cross, kinds, strategies, seed,
              config, target, seg, test: PreparedSite, fid_slices) -> dict[str, Any]:
    from harmonix import __version__

    return {
        "data": str(Path(data).resolve()),
        "center": test.site.center,
        "cases": [c.case_id for c in test.cases],
        "segmenter": _describe(segmenter),
        "segmenter_card": {k: v for k, v in (getattr(seg, "card", None) or {}).items()
                           if k in ("segmenter", "sequences", "iteration", "options")},
        "generator": _describe(generator),
        "generator_no_lam": _describe(generator_no_lam),
        "cross_center_data": str(Path(cross).resolve()) if cross else "",
        "target": target.name,
        "scenarios": kinds,
        "strategies": strategies,
        "seed": seed,
        "fid_slices": fid_slices,
        "preprocess": config.to_dict(),
        "harmonix_version": __version__,
    }


def _correlations(correlation_data, seg, test: PreparedSite, config, sequences):
    """The copy strategy's correlation table and a sentence saying what it was measured on."""
    sites = correlation_data
    origin = "given with --correlation-data"
    if sites is None:
        trained_on = ((getattr(seg, "card", None) or {}).get("training") or {}).get("data") or []
        if trained_on and all(Path(s).is_dir() for s in trained_on):
            sites, origin = trained_on, "the segmenter's training site(s)"
    if sites is None:
        table = sequence_correlations(test.cases, sequences)
        return table, (f"the test site {test.site.root} ({table.attrs['cases']} cases), because "
                       "no training site was given or recorded in the segmenter's card")
    sites = [sites] if isinstance(sites, (str, Path)) else list(sites)
    cases = []
    for site in sites:
        left = MAX_CORRELATION_CASES - len(cases)
        if left > 0:
            cases += prepare_site(site, config, sequences=sequences, need_label=False,
                                  max_cases=left).cases
    table = sequence_correlations(cases, sequences)
    names = ", ".join(str(Path(s).resolve()) for s in sites)
    return table, f"{origin}: {names} ({table.attrs['cases']} cases)"


# -- the scenarios, case by case -------------------------------------------------------------------
class _CaseWork:
    """One case's predictions, region scores and image scores, each computed once."""

    def __init__(self, case, seg: Segmenter, scorer: _SegmentationScorer, images: _ImageScorer):
        self.case, self.seg, self.scorer, self.images = case, seg, scorer, images
        self.predictions: dict[tuple[str, frozenset], np.ndarray] = {}
        self.scores: dict[tuple[str, frozenset], dict] = {}
        self.image_scores: dict[tuple[str, str, str], dict] = {}

    def segment(self, strategy: str, missing: frozenset, volumes) -> dict:
        key = (strategy, missing)
        if key not in self.scores:
            self.predictions[key] = self.seg.predict(volumes)
            self.scores[key] = self.scorer(self.predictions[key], self.case.label)
        return self.scores[key]

    def image_quality(self, label: str, sequence: str, source: str, volume) -> dict:
        key = (label, sequence, source)
        if key not in self.image_scores:
            real = self.case.volumes[sequence]
            self.image_scores[key] = self.images(volume, real, self.case.brain_mask)
        return self.image_scores[key]


def _run_cases(ev: Evaluation, test: PreparedSite, seg: Segmenter, strategies, fillers, bank,
               config, *, seed, hd95, fid_slices, overlays, progress) -> None:
    sequences = ev.sequences
    scorer = _SegmentationScorer(hd95, config.spacing)
    images = _ImageScorer()
    n = len(test.cases)
    per_case = math.ceil(fid_slices / (n // 2)) if n > 1 else 2 * fid_slices  # both halves
    total = n * len(ev.scenarios)
    with progress_task("scenarios", total=total, quiet=not progress) as advance:
        for index, case in enumerate(test.cases):
            rng = np.random.default_rng([seed, index])
            work = _CaseWork(case, seg, scorer, images)
            for scenario in ev.scenarios:
                missing = scenario.missing or ev.random_assignment[case.case_id]
                present = [s for s in sequences if s not in missing]
                base = dict(case=case.case_id, scenario=scenario.name, kind=scenario.kind,
                            missing=missing_text(missing, sequences))
                advance(0, case=case.case_id, scenario=scenario.name)
                if "complete" in strategies:
                    values = work.segment("complete", frozenset(), case.volumes)
                    for (metric, region), value in values.items():
                        ev.add(**base, strategy="complete", metric=metric, region=region,
                               value=value)
                filled = []  # (strategy, generator label, {missing: source}, volumes)
                if "copy" in strategies:
                    sources = copy_sources(ev.correlations, sorted(missing), present)
                    filled.append(("copy", "", sources, copy_fill(case.volumes, sources)))
                if "generated" in strategies:
                    volumes, sources = fillers[MAIN].fill(case, present)
                    filled.append(("generated", MAIN, sources, volumes))
                for strategy, label, sources, volumes in filled:
                    fills = _fills_text(sources, sequences)
                    for (metric, region), value in work.segment(strategy, missing, volumes).items():
                        ev.add(**base, strategy=strategy, generator=label, metric=metric,
                               region=region, source=fills, value=value)
                    for m, src in sources.items():
                        quality = work.image_quality(strategy, m, src, volumes[m])
                        for metric, value in quality.items():
                            ev.add(**base, strategy=strategy, generator=label, metric=metric,
                                   sequence=m, source=src, value=value)
                advance(1)

            _pairs_and_slices(ev, case, index, n, fillers, bank, work.image_quality, rng,
                              per_case, fid_slices)
            if index < overlays:
                ev.overlays.append(_overlay(case, work.predictions, ev))
            for filler in fillers.values():
                filler.forget(case.case_id)


def _pairs_and_slices(ev, case, index, n, fillers, bank, image_quality, rng, per_case,
                      fid_slices) -> None:
    """Every (source, target) pair of every generator: SSIM/PSNR rows; slices for FID/UMAP."""
    sequences = ev.sequences
    ks = _fid_slices(case.brain_mask, per_case, rng) if fid_slices > 0 else np.array([], int)
    if n > 1:
        halves = {"A" if index % 2 == 0 else "B": ks}
    else:
        halves = {"A": ks[0::2], "B": ks[1::2]}
    for half, half_ks in halves.items():
        for seq in sequences:
            bank.add_real(half, seq, _axial(case.volumes[seq], half_ks))
    for label, filler in fillers.items():
        for target in sequences:
            for source in sequences:
                if source == target:
                    continue
                if label == MAIN:  # whole volumes: the scenarios use them too
                    volume = filler.volume(case, target, source)
                    for metric, value in image_quality("generated", target, source,
                                                       volume).items():
                        ev.add(case=case.case_id, scenario="pairs", kind="pairs",
                               strategy="generated", generator=label, metric=metric,
                               sequence=target, source=source, value=value)
                    if "A" in halves:
                        bank.add_generated(label, source, target, _axial(volume, halves["A"]))
                elif "A" in halves and len(halves["A"]):  # FID only: just the sampled slices
                    made = filler.slices(case, target, source, halves["A"])
                    bank.add_generated(label, source, target, made.astype(np.float32))


def _overlay(case, predictions, ev: Evaluation) -> dict[str, Any]:
    """The axial slice with the most tumour, the truth and every prediction on it."""
    area = (case.label > 0).reshape(-1, case.label.shape[-1]).sum(axis=0)
    k = int(area.argmax())
    background = ev.sequences[-1]  # flair for the four BraTS sequences
    by_missing = {}
    for (strategy, missing), labels in predictions.items():
        by_missing.setdefault(missing, {})[strategy] = labels[:, :, k]
    return {"case": case.case_id, "slice": k, "background": case.volumes[background][:, :, k],
            "background_sequence": background, "truth": case.label[:, :, k],
            "predictions": by_missing}


# -- cross-center ----------------------------------------------------------------------------------
def _cross_center(ev: Evaluation, site_dir, seg: Segmenter, filler: GeneratedFiller,
                  target: Target, config, bank, *, fid_slices, seed, max_cases, progress) -> None:
    from harmonix.harmonize import fill_missing, source_domain, translate_volume

    local = prepare_site(site_dir, config, sequences=["t2"], need_label=False,
                         max_cases=max_cases)
    center = local.site.center
    sequences = ev.sequences
    domain, note = source_domain(center, "t2", target, filler.generator.domains)
    if domain is None:
        raise ValueError(f"the generator knows neither {center}/t2 nor {target.center}/t2")
    if note:
        ev.notes.append(f"cross-center: {note}")
    scorer = _SegmentationScorer(False, config.spacing)
    missing = missing_text([s for s in sequences if s != "t2"], sequences)
    local_slices, aligned_slices = [], []
    with progress_task("cross-center", total=len(local.cases), quiet=not progress) as advance:
        for index, case in enumerate(local.cases):
            t2 = case.volumes["t2"]
            made = fill_missing(case, filler.generator, filler.target, present=["t2"],
                                center=center, batch_size=filler.batch_size, seed=seed)
            aligned = translate_volume(t2, case.brain_mask, filler.generator, domain,
                                       f"{target.center}/t2", batch_size=filler.batch_size,
                                       seed=seed)
            inputs = {
                "copy": {s: t2 for s in sequences},
                "generated": {**made, "t2": aligned},
                "generated-noalign": {**made, "t2": t2},
            }
            if case.label is not None:
                for strategy, volumes in inputs.items():
                    value = scorer(seg.predict(volumes), case.label)[("dice", "WT")]
                    ev.add(case=case.case_id, scenario=CROSS, kind=CROSS, missing=missing,
                           strategy=strategy, generator="" if strategy == "copy" else MAIN,
                           metric="dice", region="WT", source=f"{domain}", value=value)
            ks = _fid_slices(case.brain_mask, max(1, math.ceil(fid_slices / len(local.cases))),
                             np.random.default_rng([seed, 10_000 + index]))
            local_slices.append(_axial(t2, ks))
            aligned_slices.append(_axial(aligned, ks))
            advance(1, case=case.case_id)
    if not any(c.label is not None for c in local.cases):
        ev.notes.append(f"cross-center: {site_dir} has no label maps, so no Dice; FID only")
    bank.cross = (center, bank.stack(local_slices), bank.stack(aligned_slices))
    ev.settings["cross_center_cases"] = [c.case_id for c in local.cases]


# -- FID -------------------------------------------------------------------------------------------
def _fid(ev: Evaluation, bank: _SliceBank, sequences, labels, *, fid_slices, seed,
         progress) -> None:
    from harmonix.plugins import get_metric

    fid = get_metric("fid")
    real_a = {s: bank.stack(bank.real.get(("A", s), [])) for s in sequences}
    real_b = {s: bank.stack(bank.real.get(("B", s), [])) for s in sequences}
    size = min(fid_slices, *(len(v) for v in (*real_a.values(), *real_b.values())))
    if size < 2:
        ev.notes.append("FID skipped: fewer than 2 real slices in a half (too few cases)")
        return
    rng = np.random.default_rng(seed)

    def equal(slices: np.ndarray) -> np.ndarray:
        """Every set the same size: a seeded subset of ``size`` slices."""
        keep = np.sort(rng.choice(len(slices), size, replace=False))
        return slices[keep] if len(slices) > size else slices

    cross = bank.cross
    sets = len(sequences) * 2 + len(labels) * len(sequences) * (len(sequences) - 1)
    sets += 2 if cross is not None else 0
    with progress_task("FID (Inception features)", total=sets, quiet=not progress) as advance:
        def features(slices):
            value = fid.features(slices)
            advance(1)
            return value

        feats_a = {s: features(equal(v)) for s, v in real_a.items()}
        feats_b = {s: features(equal(v)) for s, v in real_b.items()}
        base = dict(case="", scenario="fid", kind="fid", metric="fid")
        for t in sequences:
            ev.add(**base, strategy="real", sequence=t, source=t,
                   value=fid.distance(feats_a[t], feats_b[t]))
            for s in sequences:
                if s != t:
                    ev.add(**base, strategy="copy", sequence=t, source=s,
                           value=fid.distance(feats_a[s], feats_b[t]))
        for label in labels:
            for t in sequences:
                for s in sequences:
                    if s == t:
                        continue
                    generated = bank.stack(bank.generated.get((label, s, t), []))
                    if len(generated) < 2:
                        continue
                    ev.add(**base, strategy="generated", generator=label, sequence=t, source=s,
                           value=fid.distance(features(equal(generated)), feats_b[t]))
        if cross is not None:
            center, local, aligned = cross
            reference = np.concatenate([feats_a["t2"], feats_b["t2"]])
            if len(local) >= 2:
                cc = dict(case="", scenario=CROSS, kind=CROSS, metric="fid", sequence="t2")
                ev.add(**cc, strategy="copy", source=f"{center}/t2",
                       value=fid.distance(features(local), reference))
                ev.add(**cc, strategy="generated", generator=MAIN, source=f"{center}/t2",
                       value=fid.distance(features(aligned), reference))


# -- sequence codes --------------------------------------------------------------------------------
def _codes(ev: Evaluation, generator: Generator, bank: _SliceBank, target: Target, sequences,
           *, seed, umap) -> None:
    from harmonix.evaluate.codes import collect_codes, umap_embedding

    groups = []
    for t in sequences:
        domain = f"{target.center}/{t}"
        real = bank.stack(bank.real.get(("A", t), []) + bank.real.get(("B", t), []))
        groups.append((domain, "real", "real", real))
        for s in sequences:
            if s != t:
                groups.append((domain, "generated", s,
                               bank.stack(bank.generated.get((MAIN, s, t), []))))
    if not any(len(g[3]) for g in groups):
        ev.notes.append("UMAP skipped: no slices kept (fid_slices=0)")
        return
    table, codes = collect_codes(generator, groups)
    if not umap:
        ev.notes.append("UMAP skipped (umap=False)")
        return
    embedding, note = umap_embedding(codes, seed)
    ev.notes.append(note)
    if embedding is not None:
        table[["x", "y"]] = embedding
        ev.codes = table


def load_results(out: str | Path) -> pd.DataFrame:
    """``results.csv`` of a report folder (empty strings kept as such)."""
    return pd.read_csv(Path(out) / "results.csv", keep_default_na=False,
                       dtype={c: str for c in COLUMNS if c != "value"})


def report_settings(out: str | Path) -> dict[str, Any]:
    """``evaluation.json`` of a report folder."""
    return json.loads((Path(out) / "evaluation.json").read_text())


__all__ = ["COLUMNS", "Evaluation", "EvaluationResult", "evaluate", "load_results",
           "report_settings"]
