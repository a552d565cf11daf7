"""The paper's evaluation: a segmenter that needs every sequence, on cases with some missing.

:func:`evaluate` runs, for the complete labelled cases of a test site (preprocessed with the
segmenter's own ``PreprocessConfig``):

* checks first that no test case was seen in training: case ids and input-file content hashes
  against the training data recorded in the segmenter's and generator's model cards
  (:mod:`~harmonix.evaluate.provenance`); it refuses on overlap unless ``allow_overlap``;
* scenarios (:mod:`~harmonix.evaluate.scenarios`): the 14 fixed missing sets, random missing
  per case, and cross-center;
* strategies (:mod:`~harmonix.evaluate.strategies`): complete, copy (the mapping learned from
  training data or the clinical fallback, never from the test cases), generated;
* the metric plugins of each kind (:mod:`~harmonix.evaluate.metrics`; every registered one by
  default, or those named): per case, scenario and strategy every segmentation metric per region
  WT/TC/ET (Dice; HD95 when asked); per filled sequence every image metric (SSIM, PSNR) inside
  the brain mask against the real one. A filled case is preprocessed
  (brain mask, intensity scaling, crop) from its present sequences only
  (:class:`~harmonix.evaluate.cases.CaseVariants`); only ``complete`` sees all four;
* per (source, target) sequence pair: every image-set metric (FID) and the paper's tests on FID
  (:mod:`~harmonix.evaluate.fid`), for the generator and (if given) the one trained without LAM
  (which generates only the slices FID samples);
* the generator's whole-image and lesion codes of real and generated slices (UMAP);
* statistics (:mod:`~harmonix.evaluate.stats`) and the report (:mod:`~harmonix.evaluate.report`).

Work is shared wherever the result is the same: the complete prediction of a case serves every
scenario, a prediction is made once per (case, strategy, missing set) so random missing reuses
the fixed scenarios', and each (case, sequence, source volume) is generated once. Cases are
processed one at a time; only slices for FID/UMAP and a few overlay slices are kept.

**Cross-center.** Each labelled case of a local site (``cross_center_data``) is given to the
segmenter with only its T2 (read as the local center's domain): ``copy`` puts the local T2 in
all four inputs; ``generated`` makes T1, T1ce and FLAIR from it and also translates the T2 itself
into the target domain (``harmonix harmonize --align``); ``generated-noalign`` makes the three
but keeps the local T2 as acquired. Only the whole tumour (WT) is scored: the local labels
come from another protocol and the sub-regions depend on contrast that T2 alone does not carry.
FID of the local T2 against the target's real T2 is reported before and after alignment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harmonix.cards import portable_path
from harmonix.evaluate.brasyn import KIND as BRASYN
from harmonix.evaluate.brasyn import drops as brasyn_drops
from harmonix.evaluate.casework import run_cases
from harmonix.evaluate.context import RunContext
from harmonix.evaluate.cross import cross_center, sequence_codes
from harmonix.evaluate.fid import compute_fid
from harmonix.evaluate.metrics import select_metrics
from harmonix.evaluate.provenance import (
    OverlapError,
    case_records,
    check_overlap,
    copy_mapping,
    describe_split,
)
from harmonix.evaluate.report import write_report
from harmonix.evaluate.results import (
    COLUMNS,
    CROSS,
    GENERATOR_LABELS,
    MAIN,
    NO_LAM,
    Evaluation,
    EvaluationResult,
    load_results,
    report_settings,
)
from harmonix.evaluate.scenarios import (
    Scenario,
    fixed_scenarios,
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
    parse_strategies,
)
from harmonix.evaluate.targets import write_summary
from harmonix.harmonization.fusion import FillPolicy
from harmonix.harmonization.translate import (
    check_grid,
    load_references,
    resolve_target,
    source_ranking,
)
from harmonix.interfaces import Generator, Segmenter
from harmonix.models.checkpoints import as_generator
from harmonix.models.installed import installed_model
from harmonix.progress import progress_task
from harmonix.registry import load_registry

#: ``sources`` value: each missing sequence from the present one most correlated with it
CORRELATED = "correlated"


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
    metrics: Sequence[str] | None = None,
    overlays: int = 3,
    batch_size: int = 16,
    sources: Sequence[str] | str | None = None,
    reference: str | Path | None = None,
    fill: str | None = None,
    allow_overlap: bool = False,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``segmenter`` on the test site ``data`` across scenarios and strategies and
    write the report into ``out`` (see the module docstring for what is measured).

    ``generator`` (run directory, checkpoint or loaded Generator) is needed by the generated
    strategy, FID, UMAP and cross-center; ``generator_no_lam`` adds its FID (on the sampled
    slices only) for the comparison with and without the lesion-aware module. The copy
    mapping comes from ``correlation_data`` (training site folders), else from the
    segmenter's (or generator's) card, else from the training sites the segmenter's card names,
    else the fixed clinical mapping; the report says which. Raises
    :class:`~harmonix.evaluate.provenance.OverlapError` when a test case was seen in training,
    unless ``allow_overlap`` (the report then says so at its top). ``fid_slices=0`` skips FID.

    ``metrics`` names the metric plugins to run (:mod:`~harmonix.evaluate.metrics`); default:
    every registered one that runs by default, and ``hd95`` adds HD95. ``sources`` and
    ``reference`` choose how the generated strategy fills, as ``harmonix harmonize``'s options
    of those names do: the present sequences tried as a source, in order (or ``"correlated"``:
    per missing sequence the present one most correlated with it on the training cases, the
    copy mapping's table), and a site of real target-domain cases whose style guides the
    generator instead of the mapper's latent codes. ``fill`` (``single`` or ``fused``)
    overrides the generator card's fill policy (:mod:`harmonix.harmonization.fusion`), as
    harmonize's does.
    """
    began = time.perf_counter()
    correlated = sources == CORRELATED
    if isinstance(sources, str) and not correlated:
        raise ValueError(f"sources: a list of sequences or '{CORRELATED}', not {sources!r}")
    kinds, strategies = parse_kinds(scenarios), parse_strategies(strategies)
    chosen = select_metrics(metrics, hd95=hd95)
    seg = load_segmenter(segmenter, device)
    gen, gen_no_lam = (None if m is None else as_generator(m, device)
                       for m in (generator, generator_no_lam))
    if gen is None and ("generated" in strategies or (CROSS in kinds and cross_center_data)):
        raise ValueError("the generated strategy and cross-center need a generator (--generator)")
    config = segmenter_preprocess(seg)
    run = RunContext(Evaluation(rows=[], settings={}, sequences=tuple(seg.sequences),
                                notes=list(chosen.notes)), seg, config, strategies, {},
                     resolve_target(_target_name(target, None)), seed=seed, metrics=chosen,
                     fid_slices=fid_slices, overlays=overlays, max_cases=max_cases,
                     progress=progress)
    with run.timed("prepare"):
        test = _prepare_test(run, data)
    run.target = resolve_target(_target_name(target, test.site.center))
    references = None
    if reference is not None and gen is not None:
        references, _ = load_references(reference, run.target, config)
    _add_fillers(run, gen, gen_no_lam, test.site.center, batch_size,
                 None if correlated else sources, references, fill)
    inputs = dict(data=data, segmenter=segmenter, generator=generator,
                  generator_no_lam=generator_no_lam, cross_center_data=cross_center_data,
                  sources=sources if correlated else ",".join(sources or []),
                  reference=reference)
    run.ev.settings = _settings(run, inputs, kinds, test)
    with run.timed("provenance"):
        records = _check_provenance(run, test, data, {"segmenter": seg, "generator": gen,
                                                      "generator without LAM": gen_no_lam},
                                    cross_center_data if CROSS in kinds else None,
                                    allow_overlap)
        if "copy" in strategies or correlated or BRASYN in kinds:
            _copy_mapping(run, gen, correlation_data, records)
    for filler in run.fillers.values():
        if correlated:
            filler.ranking = source_ranking(run.ev.correlations)
        measured = run.ev.correlations is not None and run.ev.correlations.attrs.get(
            "kind") != "clinical"
        if filler.policy.fused and not filler.policy.correlations and measured:
            # a card without a table: weigh the sources by the training cases' correlations
            table = run.ev.correlations
            filler.policy = FillPolicy("fused", {t: {s: float(table.loc[t, s]) for s in
                                                     table.columns} for t in table.index})
    _plan_scenarios(run, kinds, test)
    with run.timed("scenarios"):
        run_cases(run, test)
    if CROSS in kinds:
        with run.timed("cross-center"):
            cross_center(run, cross_center_data)
    if fid_slices > 0 and run.fillers and chosen.image_set:
        with run.timed("fid"):
            compute_fid(run.ev, run.bank, run.sequences, list(run.fillers),
                        metrics=chosen.image_set, fid_slices=fid_slices, seed=seed,
                        progress=progress)
    elif fid_slices <= 0:
        run.ev.notes.append("FID skipped (fid_slices=0)")
    if gen is not None:
        with run.timed("codes"):
            sequence_codes(run, gen, umap)
    run.ev.timings["total"] = time.perf_counter() - began
    result = write_report(run.ev, out)
    result.files["summary"] = write_summary(out)  # last: its presence marks a finished report
    return result


# -- setup -----------------------------------------------------------------------------------------
def _target_name(target: str | None, center: str | None) -> str:
    """``target``, else the test site's center when it is a target, else the default one."""
    registry = load_registry()
    if target is None:
        target = center if center in registry.targets else registry.defaults.get("target")
    return target


def _prepare_test(run: RunContext, data) -> PreparedSite:
    with progress_task("prepare test cases", total=None, quiet=not run.progress) as advance:
        test = prepare_site(data, run.config, sequences=run.sequences, max_cases=run.max_cases,
                            on_case=lambda case_id: advance(1, case=case_id))
    run.ev.skipped = test.skipped
    return test


def _add_fillers(run: RunContext, gen, gen_no_lam, center: str, batch_size: int, sources,
                 references, fill: str | None) -> None:
    for label, model in ((MAIN, gen), (NO_LAM, gen_no_lam)):
        if model is None:
            continue
        option = "--generator" if label == MAIN else "--generator-no-lam"
        try:
            check_grid(run.config, model)
        except ValueError as exc:
            raise ValueError(f"{option}: the segmenter's {exc}; train the segmenter with "
                             "'harmonix segment train --preprocess-like GENERATOR'") from None
        lam = ((model.card or {}).get("recipe") or {}).get("lam")
        if lam is not None and bool(lam) != (label == MAIN):
            run.ev.notes.append(f"{option}'s model card says lam={lam}; the report labels it "
                                f"'{GENERATOR_LABELS[label]}' by the option it was given with")
        policy = FillPolicy.from_card(model.card).with_policy(fill)
        run.fillers[label] = GeneratedFiller(model, run.target, run.sequences, center=center,
                                             batch_size=batch_size, seed=run.seed,
                                             sources=sources, references=references,
                                             policy=policy)
        run.fillers[label].check()


def _describe(model) -> str:
    """A model as evaluation.json names it: an installed model by its name, a folder by its
    name only (no local path: a report travels, as a model card does)."""
    if model is None:
        return ""
    if isinstance(model, (str, Path)):
        if not Path(model).exists() and installed_model(str(model)) is not None:
            return f"{model} (installed model)"
        return portable_path(Path(model).resolve())
    return f"<{type(model).__name__}>"


def _settings(run: RunContext, inputs: dict[str, Any], kinds, test: PreparedSite) -> dict[str, Any]:
    from harmonix.version import __version__

    cross = inputs["cross_center_data"]
    return {
        "data": portable_path(Path(inputs["data"]).resolve()),
        "center": test.site.center,
        "cases": [c.case_id for c in test.cases],
        "segmenter": _describe(inputs["segmenter"]),
        "segmenter_card": {k: v for k, v in (getattr(run.seg, "card", None) or {}).items()
                           if k in ("segmenter", "sequences", "iteration", "options")},
        "generator": _describe(inputs["generator"]),
        "generator_no_lam": _describe(inputs["generator_no_lam"]),
        "cross_center_data": portable_path(Path(cross).resolve()) if cross else "",
        "target": run.target.name,
        "sources": inputs["sources"] or "registry source_priority",
        "fill": {label: f.policy.policy for label, f in run.fillers.items()},
        "guidance": (f"reference: {portable_path(Path(inputs['reference']).resolve())}"
                     if inputs["reference"] else "latent (mapper)"),
        "scenarios": kinds,
        "strategies": run.strategies,
        "metrics": run.metrics.by_kind(),
        "seed": run.seed,
        "fid_slices": run.fid_slices,
        "preprocess": run.config.to_dict(),
        "harmonix_version": __version__,
    }


# -- provenance: overlap, split, copy mapping ------------------------------------------------------
def _cross_records(site_dir, max_cases: int | None) -> list[dict[str, Any]]:
    """Records of the cross-center cases :func:`_cross_center` will use."""
    from harmonix.data.fingerprint import case_record
    from harmonix.data.site import read_site

    site = read_site(site_dir, check_voxels=False)
    usable = [c for c in site.cases if c.ok and "t2" in c.sequences][:max_cases]
    return [case_record(c, site.root) for c in usable]


def _check_provenance(run: RunContext, test: PreparedSite, data, models, cross_center_data,
                      allow_overlap: bool) -> list[dict[str, Any]]:
    records = case_records(test)
    cross = _cross_records(cross_center_data, run.max_cases) if cross_center_data else []
    check = check_overlap(records + cross, models)
    provenance = run.ev.provenance
    provenance.split = describe_split(data)
    provenance.overlap = check.summary(len(records) + len(cross))
    provenance.overlaps = [str(o) for o in check.overlaps]
    if check.overlaps and not allow_overlap:
        raise OverlapError("test cases were seen in training: " + "; ".join(provenance.overlaps)
                           + ". Evaluate on held-out cases (harmonix split), or pass "
                           "--allow-overlap to evaluate anyway (the report then says so at its "
                           "top)")
    provenance.overlap_allowed = bool(check.overlaps)
    return records


def _copy_mapping(run: RunContext, gen, correlation_data, records) -> None:
    ev = run.ev
    ev.correlations, ev.correlation_source = copy_mapping(
        run.sequences, segmenter=run.seg, generator=gen, correlation_data=correlation_data,
        config=run.config, test_records=records)
    ev.provenance.copy_mapping = ev.correlation_source
    for a in run.sequences:
        for b in run.sequences:
            ev.add(scenario="correlation", kind="correlation", metric="pearson_r"
                   if ev.correlations.attrs.get("kind") != "clinical" else "clinical_rank",
                   sequence=a, source=b, value=float(ev.correlations.loc[a, b]))


def _plan_scenarios(run: RunContext, kinds, test: PreparedSite) -> None:
    ev = run.ev
    ev.scenarios = fixed_scenarios(run.sequences, [k for k in kinds
                                                   if k in ("single", "double", "triple")])
    if "random" in kinds:
        ev.random_assignment = random_missing([c.case_id for c in test.cases], run.sequences,
                                              seed=run.seed)
        ev.scenarios.append(Scenario("random", "random"))
    if BRASYN in kinds:
        ev.brasyn_assignment = brasyn_drops([c.case_id for c in test.cases], run.sequences,
                                            seed=run.seed)
        ev.settings["brasyn_drops"] = {c: "+".join(sorted(m))
                                       for c, m in ev.brasyn_assignment.items()}
        ev.scenarios.append(Scenario(BRASYN, BRASYN))


__all__ = ["COLUMNS", "Evaluation", "EvaluationResult", "OverlapError", "evaluate",
           "load_results", "report_settings"]
