"""The paper's evaluation: a segmenter that needs every sequence, on cases with some missing.

:func:`run_evaluation` runs, for the complete labelled cases of a test site (preprocessed with the
segmenter's own ``PreprocessConfig``):

* checks first that no test case was seen in training: case ids and input-file content hashes
  against the training data recorded in the segmenter's and generator's model cards
  (:mod:`~harmonix.evaluation.provenance`); it refuses on overlap unless ``allow_overlap``;
* scenarios (:mod:`~harmonix.evaluation.scenarios`): the 14 fixed missing sets, random missing
  per case, and cross-center;
* strategies (:mod:`~harmonix.evaluation.strategies`): complete, copy (the mapping learned from
  training data or the clinical fallback, never from the test cases), generated;
* the metric plugins of each kind (:mod:`~harmonix.evaluation.metrics`; every registered one by
  default, or those named): per case, scenario and strategy every segmentation metric per region
  WT/TC/ET (Dice; HD95 when asked); per filled sequence every image metric (SSIM, PSNR) inside
  the brain mask against the real one. A filled case is preprocessed
  (brain mask, intensity scaling, crop) from its present sequences only
  (:class:`~harmonix.evaluation.cases.CaseVariants`); only ``complete`` sees all four;
* per (source, target) sequence pair: every image-set metric (FID) and the paper's tests on FID
  (:mod:`~harmonix.evaluation.fid`), for the generator and (if given) the one trained without LAM
  (which generates only the slices FID samples);
* the generator's whole-image and lesion codes of real and generated slices (UMAP);
* statistics (:mod:`~harmonix.evaluation.stats`) and the report
  (:mod:`~harmonix.evaluation.report`).

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
from pathlib import Path
from typing import Any

from harmonix.cards import portable_path
from harmonix.evaluation.brasyn import KIND as BRASYN
from harmonix.evaluation.brasyn import drops as brasyn_drops
from harmonix.evaluation.casework import run_cases
from harmonix.evaluation.context import RunContext
from harmonix.evaluation.cross import cross_center, sequence_codes
from harmonix.evaluation.fid import compute_fid
from harmonix.evaluation.metrics import select_metrics
from harmonix.evaluation.provenance import (
    OverlapError,
    case_records,
    check_overlap,
    copy_mapping,
    describe_split,
)
from harmonix.evaluation.report import write_report
from harmonix.evaluation.request import CORRELATED, EvaluateRequest
from harmonix.evaluation.results import (
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
from harmonix.evaluation.scenarios import (
    Scenario,
    fixed_scenarios,
    random_missing,
)
from harmonix.evaluation.strategies import (
    GeneratedFiller,
)
from harmonix.evaluation.targets import write_summary
from harmonix.harmonization.fusion import FillPolicy
from harmonix.harmonization.translate import (
    check_grid,
    load_references,
    resolve_target,
    source_ranking,
)
from harmonix.models.checkpoints import as_generator
from harmonix.models.installed import installed_model
from harmonix.progress import progress_task
from harmonix.registry import load_registry
from harmonix.segmentation import (
    PreparedSite,
    load_segmenter,
    prepare_site,
    segmenter_preprocess,
)


def run_evaluation(request: EvaluateRequest) -> EvaluationResult:
    """Evaluate ``request.segmenter`` on the test site ``request.data`` across scenarios and
    strategies and write the report into ``request.out`` (the module docstring says what is
    measured; :class:`~harmonix.evaluation.request.EvaluateRequest` every field). Raises
    :class:`~harmonix.evaluation.provenance.OverlapError` when a test case was seen in training,
    unless ``allow_overlap`` (the report then says so at its top)."""
    req = request
    began = time.perf_counter()
    kinds, strategies = list(req.scenarios), list(req.strategies)
    chosen = select_metrics(req.metrics, hd95=req.hd95)
    seg = load_segmenter(req.segmenter, req.device)
    gen, gen_no_lam = (None if m is None else as_generator(m, req.device)
                       for m in (req.generator, req.generator_no_lam))
    if gen is None and ("generated" in strategies or
                        (CROSS in kinds and req.cross_center_data)):
        raise ValueError("the generated strategy and cross-center need a generator (--generator)")
    config = segmenter_preprocess(seg)
    run = RunContext(request=req, seg=seg, config=config, strategies=strategies,
                     metrics=chosen, target=resolve_target(_target_name(req.target, None)),
                     ev=Evaluation(rows=[], settings={}, sequences=tuple(seg.sequences),
                                   notes=list(chosen.notes)))
    with run.timed("prepare"):
        test = _prepare_test(run, req.data)
    run.target = resolve_target(_target_name(req.target, test.site.center))
    references = None
    if req.reference is not None and gen is not None:
        references, _ = load_references(req.reference, run.target, config)
    _add_fillers(run, gen, gen_no_lam, test.site.center,
                 None if req.correlated else req.sources, references)
    run.ev.settings = _settings(run, kinds, test)
    with run.timed("provenance"):
        records = _check_provenance(run, test, {"segmenter": seg, "generator": gen,
                                                "generator without LAM": gen_no_lam},
                                    req.cross_center_data if CROSS in kinds else None)
        if "copy" in strategies or req.correlated or BRASYN in kinds:
            _copy_mapping(run, gen, req.correlation_data, records)
    for filler in run.fillers.values():
        if req.correlated:
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
            cross_center(run, req.cross_center_data)
    if req.fid_slices > 0 and run.fillers and chosen.image_set:
        with run.timed("fid"):
            compute_fid(run.ev, run.bank, run.sequences, list(run.fillers),
                        metrics=chosen.image_set, fid_slices=req.fid_slices, seed=req.seed,
                        progress=req.progress)
    elif req.fid_slices <= 0:
        run.ev.notes.append("FID skipped (fid_slices=0)")
    if gen is not None:
        with run.timed("codes"):
            sequence_codes(run, gen, req.umap)
    run.ev.timings["total"] = time.perf_counter() - began
    result = write_report(run.ev, req.out)
    result.files["summary"] = write_summary(req.out)  # last: its presence marks a finished report
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


def _add_fillers(run: RunContext, gen, gen_no_lam, center: str, sources, references) -> None:
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
        policy = FillPolicy.from_card(model.card).with_policy(run.request.fill)
        run.fillers[label] = GeneratedFiller(model, run.target, run.sequences, center=center,
                                             batch_size=run.request.batch_size, seed=run.seed,
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


def _settings(run: RunContext, kinds, test: PreparedSite) -> dict[str, Any]:
    from harmonix.version import __version__

    req = run.request
    cross = req.cross_center_data
    return {
        "data": portable_path(req.data.resolve()),
        "center": test.site.center,
        "cases": [c.case_id for c in test.cases],
        "segmenter": _describe(req.segmenter),
        "segmenter_card": {k: v for k, v in (getattr(run.seg, "card", None) or {}).items()
                           if k in ("segmenter", "sequences", "iteration", "options")},
        "generator": _describe(req.generator),
        "generator_no_lam": _describe(req.generator_no_lam),
        "cross_center_data": portable_path(cross.resolve()) if cross else "",
        "target": run.target.name,
        "sources": (CORRELATED if req.correlated else ",".join(req.sources or []))
        or "registry source_priority",
        "fill": {label: f.policy.policy for label, f in run.fillers.items()},
        "guidance": (f"reference: {portable_path(req.reference.resolve())}"
                     if req.reference else "latent (mapper)"),
        "scenarios": kinds,
        "strategies": run.strategies,
        "metrics": run.metrics.by_kind(),
        "seed": run.seed,
        "fid_slices": run.fid_slices,
        "preprocess": run.config.to_dict(),
        "harmonix_version": __version__,
        **_provenance(run, test),
    }


def _provenance(run: RunContext, test: PreparedSite) -> dict[str, Any]:
    """The models' card hashes (``models export --report`` checks them) and the test cases'
    synthetic inputs (:mod:`harmonix.data.provenance`)."""
    from harmonix.data.provenance import synthetic_inputs
    from harmonix.harmonization.outputs import card_hash

    def hashed(model) -> str:
        card = getattr(model, "card", None)
        return card_hash(card) if card else ""

    def weights(model) -> str:  # the weights' sha256 in the card: what export checks first
        files = (getattr(model, "card", None) or {}).get("files") or {}
        return str((files.get("model.safetensors") or {}).get("sha256", ""))

    gens = {label: f.generator for label, f in run.fillers.items()}
    return {
        "segmenter_card_sha256": hashed(run.seg),
        "segmenter_weights_sha256": weights(run.seg),
        "generator_card_sha256": {label: hashed(g) for label, g in gens.items()},
        "generator_weights_sha256": {label: weights(g) for label, g in gens.items()},
        "synthetic_inputs": synthetic_inputs(test.site),
    }


# -- provenance: overlap, split, copy mapping ------------------------------------------------------
def _cross_records(site_dir, max_cases: int | None) -> list[dict[str, Any]]:
    """Records of the cross-center cases :func:`_cross_center` will use."""
    from harmonix.data.fingerprint import case_record
    from harmonix.data.site import read_site

    site = read_site(site_dir, check_voxels=False)
    usable = [c for c in site.cases if c.ok and "t2" in c.sequences][:max_cases]
    return [case_record(c, site.root) for c in usable]


def _check_provenance(run: RunContext, test: PreparedSite, models,
                      cross_center_data) -> list[dict[str, Any]]:
    records = case_records(test)
    cross = _cross_records(cross_center_data, run.max_cases) if cross_center_data else []
    check = check_overlap(records + cross, models)
    provenance = run.ev.provenance
    provenance.split = describe_split(run.request.data)
    provenance.overlap = check.summary(len(records) + len(cross))
    provenance.overlaps = [str(o) for o in check.overlaps]
    if check.overlaps and not run.request.allow_overlap:
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


__all__ = ["COLUMNS", "Evaluation", "EvaluationResult", "OverlapError",
           "load_results", "report_settings", "run_evaluation"]
